//! [`Config`]: the plugin's configuration table, read with typed getters and defaults.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The plugin's configuration: the pipeline's `[<stage>.config]` table, which the host
/// passes as a JSON object (a trainer's also holds the host's `learning_rate`).
///
/// Getters take the key and a default for when the key is absent (or JSON `null`); a
/// present value of the wrong type is an error that names the key, so a typo in a value
/// is never silently replaced by the default. Keys nobody asks for are ignored.
///
/// ```
/// let config = tensorlet_sdk::Config::parse(r#"{"learning_rate": 0.5, "hidden": [32, 16]}"#)?;
/// assert_eq!(config.f32_or("learning_rate", 0.1)?, 0.5);
/// assert_eq!(config.u32_list_or("hidden", &[64])?, vec![32, 16]);
/// assert_eq!(config.str_or("optimizer", "adam")?, "adam");
/// assert!(config.u32_or("learning_rate", 1).is_err()); // 0.5 is not a u32
/// # Ok::<(), tensorlet_sdk::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: Map<String, Value>,
}

impl Config {
    /// Parses a JSON object; an empty (or all-whitespace) string is an empty config.
    pub fn parse(json: &str) -> Result<Config> {
        if json.trim().is_empty() {
            return Ok(Config::default());
        }
        match serde_json::from_str(json) {
            Ok(Value::Object(values)) => Ok(Config { values }),
            Ok(other) => Err(Error::msg(format!(
                "the plugin config must be a JSON object, got {}",
                kind(&other)
            ))),
            Err(e) => Err(Error::msg(format!(
                "the plugin config is not valid JSON: {e}"
            ))),
        }
    }

    /// The raw JSON value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Whether `key` is present (and not `null`).
    pub fn contains(&self, key: &str) -> bool {
        self.present(key).is_some()
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// A number as f32, or `default`.
    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        Ok(self.typed(key, "a number", as_f32)?.unwrap_or(default))
    }

    /// A number as f64, or `default`.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self
            .typed(key, "a number", Value::as_f64)?
            .unwrap_or(default))
    }

    /// A whole number in `0..=u32::MAX`, or `default`.
    pub fn u32_or(&self, key: &str, default: u32) -> Result<u32> {
        Ok(self
            .typed(key, "a whole number in 0..=4294967295", as_u32)?
            .unwrap_or(default))
    }

    /// A whole number in `0..=u64::MAX`, or `default`.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        Ok(self
            .typed(key, "a non-negative whole number", as_u64)?
            .unwrap_or(default))
    }

    /// A boolean, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self
            .typed(key, "true or false", Value::as_bool)?
            .unwrap_or(default))
    }

    /// A string, or `default`.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str> {
        Ok(self
            .typed(key, "a string", Value::as_str)?
            .unwrap_or(default))
    }

    /// A list of whole numbers in `0..=u32::MAX`, or `default`.
    pub fn u32_list_or(&self, key: &str, default: &[u32]) -> Result<Vec<u32>> {
        let list = self.typed(key, "a list of whole numbers in 0..=4294967295", |v| {
            v.as_array()?.iter().map(as_u32).collect::<Option<Vec<_>>>()
        })?;
        Ok(list.unwrap_or_else(|| default.to_vec()))
    }

    /// A list of numbers as f32, or `default`.
    pub fn f32_list_or(&self, key: &str, default: &[f32]) -> Result<Vec<f32>> {
        let list = self.typed(key, "a list of numbers", |v| {
            v.as_array()?.iter().map(as_f32).collect::<Option<Vec<_>>>()
        })?;
        Ok(list.unwrap_or_else(|| default.to_vec()))
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    /// `Ok(None)` when absent, `Ok(Some(_))` when `convert` accepts the value, else an
    /// error naming the key, what it should be and what it is.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(value) = self.present(key) else {
            return Ok(None);
        };
        match convert(value) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::msg(format!(
                "config key `{key}` must be {expected}, got {}",
                shorten(&value.to_string())
            ))),
        }
    }
}

fn as_f32(v: &Value) -> Option<f32> {
    let x = v.as_f64()?;
    let y = x as f32;
    y.is_finite().then_some(y)
}

/// Integers, and floats with no fractional part (TOML or JSON writers may emit `64.0`).
fn as_u64(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let x = v.as_f64()?;
    (x.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&x)).then_some(x as u64)
}

fn as_u32(v: &Value) -> Option<u32> {
    as_u64(v)?.try_into().ok()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Keeps error messages one line long.
fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_string_and_empty_object_are_empty() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse(" {} ").unwrap(), Config::default());
    }

    #[test]
    fn non_objects_and_bad_json_are_errors() {
        let e = Config::parse("[1, 2]").unwrap_err();
        assert_eq!(
            e.message(),
            "the plugin config must be a JSON object, got a list"
        );
        let e = Config::parse("{\"a\": ").unwrap_err();
        assert!(
            e.message()
                .starts_with("the plugin config is not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn typed_getters_read_values_and_defaults() {
        let c = Config::parse(
            r#"{"lr": 0.25, "n": 7, "wide": 64.0, "name": "adam", "on": true,
                "hidden": [8, 4], "w": [0.5, 1], "seed": 18446744073709551615, "gone": null}"#,
        )
        .unwrap();
        assert_eq!(c.f32_or("lr", 1.0).unwrap(), 0.25);
        assert_eq!(c.f32_or("n", 1.0).unwrap(), 7.0);
        assert_eq!(c.f64_or("lr", 1.0).unwrap(), 0.25);
        assert_eq!(c.u32_or("n", 1).unwrap(), 7);
        assert_eq!(c.u32_or("wide", 1).unwrap(), 64);
        assert_eq!(c.u64_or("seed", 1).unwrap(), u64::MAX);
        assert_eq!(c.str_or("name", "sgd").unwrap(), "adam");
        assert!(c.bool_or("on", false).unwrap());
        assert_eq!(c.u32_list_or("hidden", &[1]).unwrap(), vec![8, 4]);
        assert_eq!(c.f32_list_or("w", &[]).unwrap(), vec![0.5, 1.0]);
        // Absent or null: the default.
        assert_eq!(c.f32_or("missing", 0.1).unwrap(), 0.1);
        assert_eq!(c.u32_or("gone", 3).unwrap(), 3);
        assert_eq!(c.u32_list_or("missing", &[64]).unwrap(), vec![64]);
        assert_eq!(c.str_or("missing", "sgd").unwrap(), "sgd");
        assert!(c.contains("lr"));
        assert!(!c.contains("gone"));
        assert_eq!(c.keys().count(), 9);
    }

    #[test]
    fn wrong_types_name_the_key_and_the_value() {
        let c = Config::parse(
            r#"{"lr": "fast", "n": -1, "frac": 1.5, "hidden": [8, "x"], "big": 4294967296,
                "huge": 1e300, "on": 1}"#,
        )
        .unwrap();
        fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
            r.unwrap_err().message().to_string()
        }
        assert_eq!(
            msg(c.f32_or("lr", 0.1)),
            "config key `lr` must be a number, got \"fast\""
        );
        assert_eq!(
            msg(c.u32_or("n", 1)),
            "config key `n` must be a whole number in 0..=4294967295, got -1"
        );
        assert!(c.u32_or("frac", 1).is_err());
        assert!(c.u32_or("big", 1).is_err());
        assert_eq!(c.u64_or("big", 1).unwrap(), 4294967296);
        assert!(c.f32_or("huge", 1.0).is_err());
        assert!(c.bool_or("on", false).is_err());
        assert!(c.str_or("n", "x").is_err());
        assert_eq!(
            msg(c.u32_list_or("hidden", &[])),
            "config key `hidden` must be a list of whole numbers in 0..=4294967295, got [8,\"x\"]"
        );
    }
}
