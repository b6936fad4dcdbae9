//! [`Config`]: the plugin's configuration table, decoded into the plugin's own struct
//! ([`Config::decode`]) or read with typed getters and defaults.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The plugin's configuration: the pipeline's `[<stage>.config]` table, which the host
/// passes as a JSON object (a trainer's also holds the host's `learning_rate`).
///
/// The way to read it is [`Config::decode`]: declare the keys as a struct and decode the
/// table into it, so that an unknown or misspelled key is an error naming the key and
/// the known ones, never a silent default:
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// struct MlpConfig {
///     hidden: Vec<u32>,
///     init_std: f32,
/// }
///
/// impl Default for MlpConfig {
///     fn default() -> Self {
///         MlpConfig { hidden: vec![64], init_std: 0.01 }
///     }
/// }
///
/// let config = tensorlet_sdk::Config::parse(r#"{"hidden": [32, 16]}"#)?;
/// let c: MlpConfig = config.decode()?;
/// assert_eq!((c.hidden, c.init_std), (vec![32, 16], 0.01));
///
/// let typo = tensorlet_sdk::Config::parse(r#"{"hiden": [128]}"#)?;
/// assert_eq!(
///     typo.decode::<MlpConfig>().err().unwrap().message(),
///     "unknown config key `hiden`; the known keys are: hidden, init_std"
/// );
/// # Ok::<(), tensorlet_sdk::Error>(())
/// ```
///
/// The getters take the key and a default for when the key is absent (or JSON `null`);
/// a present value of the wrong type is an error that names the key. They do not see
/// the keys nobody asks for, so a plugin that uses only getters should check
/// [`Config::keys`] itself (or use [`Config::expect_keys`]).
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

    /// Decodes the table into `T`, the plugin's declared config (a struct deriving serde's
    /// `Deserialize`, usually with `#[serde(deny_unknown_fields, default)]`).
    ///
    /// A key that `T` does not declare is an error, ``unknown config key `hiden`; the
    /// known keys are: hidden, init_std``, whether or not `T` says
    /// `deny_unknown_fields` (say it anyway: it also covers nested tables and
    /// `#[serde(flatten)]`); a value of the wrong type is an error naming its key
    /// (``config key `hidden`: invalid type: …``); a missing key without a default is
    /// ``missing config key `x` ``. `null` counts as absent, as for the getters.
    ///
    /// A trainer's table also holds the host's `learning_rate`, so a trainer's config
    /// struct declares that field.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(Table(&self.values)).map_err(|e| Error::msg(e.0))
    }

    /// Fails, naming the first key not in `known` and listing `known`, when the table
    /// has a key that is not in `known`: the check [`Config::decode`] makes, for a
    /// plugin that reads its config with the getters.
    ///
    /// ```
    /// let config = tensorlet_sdk::Config::parse(r#"{"init_std": 0.1, "sead": 3}"#)?;
    /// assert_eq!(
    ///     config.expect_keys(&["init_std", "seed"]).unwrap_err().message(),
    ///     "unknown config key `sead`; the known keys are: init_std, seed"
    /// );
    /// # Ok::<(), tensorlet_sdk::Error>(())
    /// ```
    pub fn expect_keys(&self, known: &[&str]) -> Result<()> {
        match self.keys().find(|k| !known.contains(k)) {
            Some(key) => Err(Error::msg(unknown_key(key, known))),
            None => Ok(()),
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

/// ``unknown config key `key`; the known keys are: a, b`` (sorted).
fn unknown_key(key: &str, known: &[&str]) -> String {
    if known.is_empty() {
        return format!("unknown config key `{key}`; this plugin takes no config keys");
    }
    let mut known = known.to_vec();
    known.sort_unstable();
    known.dedup();
    format!(
        "unknown config key `{key}`; the known keys are: {}",
        known.join(", ")
    )
}

/// What [`Config::decode`] fails with; its message becomes the SDK's [`Error`].
#[derive(Debug)]
struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        DecodeError(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        DecodeError(format!("missing config key `{field}`"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DecodeError(unknown_key(field, expected))
    }
}

/// The config table as a serde `Deserializer`: a map whose keys are checked against a
/// struct's fields and whose values' errors name their key.
struct Table<'a>(&'a Map<String, Value>);

impl<'de> de::Deserializer<'de> for Table<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_map(Entries {
            entries: self.0.iter().filter(|(_, v)| !v.is_null()),
            value: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // serde's `deny_unknown_fields` would say "unknown field `x`, expected one of
        // …" for the first unknown key in the table's order; this names it the same
        // way as `expect_keys`, and also for structs that do not deny unknown fields.
        if let Some(key) = self.0.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(DecodeError(unknown_key(key, fields)));
        }
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// The table's entries, for serde's `MapAccess`.
struct Entries<'de, I> {
    entries: I,
    /// The key and value of the entry whose key was just handed out.
    value: Option<(&'de str, &'de Value)>,
}

impl<'de, I: Iterator<Item = (&'de String, &'de Value)>> MapAccess<'de> for Entries<'de, I> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key.as_str()))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| DecodeError("a config value was asked for before its key".into()))?;
        seed.deserialize(value)
            .map_err(|e| DecodeError(format!("config key `{key}`: {e}")))
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

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Mlp {
        hidden: Vec<u32>,
        learning_rate: f32,
        strategy: Strategy,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Strategy {
        Mean,
        MostFrequent,
    }

    impl Default for Mlp {
        fn default() -> Self {
            Mlp {
                hidden: vec![64],
                learning_rate: 0.1,
                strategy: Strategy::Mean,
            }
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct Required {
        #[allow(dead_code, reason = "only decoded")]
        graph: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}

    fn decode<T: DeserializeOwned>(json: &str) -> Result<T> {
        Config::parse(json).unwrap().decode()
    }

    fn decode_err<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        decode::<T>(json).unwrap_err().message().to_string()
    }

    #[test]
    fn decode_fills_defaults_and_reads_values() {
        assert_eq!(decode::<Mlp>("").unwrap(), Mlp::default());
        let m: Mlp =
            decode(r#"{"hidden": [8, 4], "learning_rate": 0.5, "strategy": "most_frequent"}"#)
                .unwrap();
        assert_eq!(
            m,
            Mlp {
                hidden: vec![8, 4],
                learning_rate: 0.5,
                strategy: Strategy::MostFrequent
            }
        );
        // null is absent, as for the getters.
        assert_eq!(
            decode::<Mlp>(r#"{"hidden": null}"#).unwrap(),
            Mlp::default()
        );
        decode::<Nothing>("{}").unwrap();
    }

    #[test]
    fn decode_names_unknown_keys_and_the_known_ones() {
        assert_eq!(
            decode_err::<Mlp>(r#"{"learning_rate": 0.1, "hiden": [128]}"#),
            "unknown config key `hiden`; the known keys are: hidden, learning_rate, strategy"
        );
        assert_eq!(
            decode_err::<Nothing>(r#"{"scale": 2}"#),
            "unknown config key `scale`; this plugin takes no config keys"
        );
        // Also for a struct that does not deny unknown fields itself.
        assert_eq!(
            decode_err::<Required>(r#"{"graph": "g", "grahp": "h"}"#),
            "unknown config key `grahp`; the known keys are: graph"
        );
    }

    #[test]
    fn decode_names_the_key_of_a_bad_value() {
        assert_eq!(
            decode_err::<Mlp>(r#"{"hidden": [8, "x"]}"#),
            "config key `hidden`: invalid type: string \"x\", expected u32"
        );
        assert_eq!(
            decode_err::<Mlp>(r#"{"strategy": "median"}"#),
            "config key `strategy`: unknown variant `median`, expected `mean` or `most_frequent`"
        );
        assert_eq!(decode_err::<Required>("{}"), "missing config key `graph`");
    }

    #[test]
    fn expect_keys_names_the_unknown_key() {
        let c = Config::parse(r#"{"a": 1, "b": 2}"#).unwrap();
        c.expect_keys(&["b", "a", "c"]).unwrap();
        assert_eq!(
            c.expect_keys(&["b"]).unwrap_err().message(),
            "unknown config key `a`; the known keys are: b"
        );
    }
}
