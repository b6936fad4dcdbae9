//! [`Params`]: the ordered, named tensors that make up fitted state or a model.

use std::fmt;

use crate::raw::NamedTensor;
use crate::{Error, Result, Tensor};

/// An ordered list of named tensors: a preprocessor's fitted state, or a model's
/// parameters and optimizer state.
///
/// The host stores it between calls and hands it back unchanged; order is kept as
/// inserted. Names are expected to be unique: [`Params::insert`] replaces an entry of
/// the same name in place.
#[derive(Default)]
pub struct Params {
    entries: Vec<(String, Tensor)>,
}

impl Params {
    /// No entries.
    pub fn new() -> Params {
        Params::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// The entry called `name`; the error names it and lists the entries there are.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| self.missing(name))
    }

    /// Adds `value` as `name` at the end, or replaces the entry already called `name`
    /// (keeping its position) and returns the old tensor.
    pub fn insert(&mut self, name: impl Into<String>, value: Tensor) -> Option<Tensor> {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }

    /// [`Params::insert`] for building: `Params::new().with("w", w).with("b", b)`.
    pub fn with(mut self, name: impl Into<String>, value: Tensor) -> Params {
        self.insert(name, value);
        self
    }

    /// Removes the entry called `name` and returns it, if there is one.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let index = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.remove(index).1)
    }

    /// Removes the entry called `name` and returns it; the error names it like
    /// [`Params::get`].
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        match self.remove(name) {
            Some(t) => Ok(t),
            None => Err(self.missing(name)),
        }
    }

    /// Stores f64 `values` as `name`, a `[len, 2]` tensor of two f32 per value
    /// (the value rounded to f32, then what that rounding left out), so that
    /// running sums kept between calls keep about 48 bits of precision.
    /// [`Params::wide`] reads them back.
    pub fn put_wide(&mut self, name: impl Into<String>, values: &[f64]) -> Result<()> {
        let mut pairs = Vec::with_capacity(values.len() * 2);
        for &v in values {
            let hi = v as f32;
            pairs.push(hi);
            pairs.push((v - f64::from(hi)) as f32);
        }
        self.insert(name, Tensor::from_list(&[values.len() as u32, 2], &pairs)?);
        Ok(())
    }

    /// The f64 values [`Params::put_wide`] stored as `name`.
    pub fn wide(&self, name: &str) -> Result<Vec<f64>> {
        let t = self.get(name)?;
        let shape = t.shape();
        if shape.len() != 2 || shape[1] != 2 {
            return Err(Error::msg(format!(
                "tensor `{name}` should hold wide values, shape [n, 2], but has shape {shape:?}"
            )));
        }
        Ok(t.to_vec()
            .chunks(2)
            .map(|p| f64::from(p[0]) + f64::from(p[1]))
            .collect())
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The entries, in order.
    pub fn iter(&self) -> ParamsIter<'_> {
        ParamsIter(self.entries.iter())
    }

    fn missing(&self, name: &str) -> Error {
        let have: Vec<&str> = self.names().collect();
        if have.is_empty() {
            Error::msg(format!("missing tensor `{name}`: there are no tensors"))
        } else {
            Error::msg(format!(
                "missing tensor `{name}` (have: {})",
                have.join(", ")
            ))
        }
    }
}

/// Shows names and shapes.
impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, t)| (n, t.shape())))
            .finish()
    }
}

impl IntoIterator for Params {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a str, &'a Tensor);
    type IntoIter = ParamsIter<'a>;
    fn into_iter(self) -> ParamsIter<'a> {
        self.iter()
    }
}

/// The entries of [`Params`], borrowed, in order: `(name, tensor)`.
#[derive(Debug, Clone)]
pub struct ParamsIter<'a>(std::slice::Iter<'a, (String, Tensor)>);

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a str, &'a Tensor);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(n, t)| (n.as_str(), t))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ParamsIter<'_> {}

/// Collects entries with [`Params::insert`] (a repeated name replaces the earlier one).
impl<S: Into<String>> FromIterator<(S, Tensor)> for Params {
    fn from_iter<I: IntoIterator<Item = (S, Tensor)>>(iter: I) -> Params {
        let mut params = Params::new();
        params.extend(iter);
        params
    }
}

impl<S: Into<String>> Extend<(S, Tensor)> for Params {
    fn extend<I: IntoIterator<Item = (S, Tensor)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.insert(name, value);
        }
    }
}

/// From the WIT `list<named-tensor>`, keeping order (and any repeated names).
impl From<Vec<NamedTensor>> for Params {
    fn from(list: Vec<NamedTensor>) -> Params {
        Params {
            entries: list
                .into_iter()
                .map(|nt| (nt.name, Tensor::from_raw(nt.value)))
                .collect(),
        }
    }
}

/// Into the WIT `list<named-tensor>`, in order.
impl From<Params> for Vec<NamedTensor> {
    fn from(params: Params) -> Vec<NamedTensor> {
        params
            .entries
            .into_iter()
            .map(|(name, t)| NamedTensor {
                name,
                value: t.into_raw(),
            })
            .collect()
    }
}
