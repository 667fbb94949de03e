//! The field names of a struct, read from its `Deserialize` impl, so lists that must match a
//! type's fields (the `OWL_*` variables, the example config) derive from the type itself.

use serde::de::{self, Deserialize, Visitor};
use std::fmt;

#[derive(Debug)]
struct Found(&'static [&'static str]);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fields {:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Found(&[])
    }
}

/// A deserializer that answers nothing: a derived struct impl asks it for a struct, naming
/// every field it accepts, and that list is the answer.
struct Probe;

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
        Err(Found(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Found> {
        Err(Found(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Every field name `T` accepts (empty for a type that is not a plain struct).
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Probe) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Example {
        plain: u32,
        optional: Option<String>,
        #[serde(rename = "renamed")]
        other: bool,
    }

    #[test]
    fn names_every_field_as_serde_reads_it() {
        assert_eq!(super::field_names::<Example>(), ["plain", "optional", "renamed"]);
        assert!(super::field_names::<u32>().is_empty());
    }
}
