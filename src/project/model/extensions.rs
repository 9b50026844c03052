//! `x-*` extension keys, and the rejection of every other unknown key.
//!
//! Structs that allow extensions flatten an [`Extensions`] field: serde hands it every
//! key the struct does not know, so this is where a typo such as `imgae` is caught and
//! reported in Compose's words.

use std::ops::{Deref, DerefMut};

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_yaml::Value;

/// The `x-*` keys of a Compose object, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions(pub IndexMap<String, Value>);

impl Extensions {
    /// Whether a key may appear as an extension.
    pub fn is_extension_key(key: &str) -> bool {
        key.starts_with("x-")
    }
}

impl Deref for Extensions {
    type Target = IndexMap<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Extensions {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Compose's message for keys the schema does not allow.
pub fn additional_properties_message(keys: &[String]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    match quoted.as_slice() {
        [one] => format!("additional properties {one} not allowed"),
        many => format!("additional properties {} not allowed", many.join(", ")),
    }
}

impl Serialize for Extensions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter())
    }
}

struct ExtensionsVisitor;

impl<'de> Visitor<'de> for ExtensionsVisitor {
    type Value = Extensions;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping of x-* extension keys")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Extensions, E> {
        Ok(Extensions::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extensions, A::Error> {
        let mut found = IndexMap::new();
        let mut rejected = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if Extensions::is_extension_key(&key) {
                let value = map.next_value::<Value>()?;
                found.insert(key, value);
            } else {
                map.next_value::<de::IgnoredAny>()?;
                rejected.push(key);
            }
        }
        if rejected.is_empty() {
            Ok(Extensions(found))
        } else {
            Err(de::Error::custom(additional_properties_message(&rejected)))
        }
    }
}

impl<'de> Deserialize<'de> for Extensions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ExtensionsVisitor)
    }
}

impl JsonSchema for Extensions {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Extensions".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "patternProperties": {"^x-": {}},
            "additionalProperties": false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Holder {
        #[serde(default)]
        image: String,
        #[serde(flatten)]
        extensions: Extensions,
    }

    #[test]
    fn keeps_x_keys_in_order() {
        let h: Holder = serde_yaml::from_str("image: a\nx-b: 1\nx-a: {k: v}\n").unwrap();
        let keys: Vec<&String> = h.extensions.keys().collect();
        assert_eq!(keys, ["x-b", "x-a"]);
        let out = serde_yaml::to_string(&h).unwrap();
        assert_eq!(out, "image: a\nx-b: 1\nx-a:\n  k: v\n");
    }

    #[test]
    fn rejects_unknown_keys_with_compose_wording() {
        let err = serde_yaml::from_str::<Holder>("imgae: a\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("additional properties 'imgae' not allowed"),
            "{err}"
        );
        let err = serde_yaml::from_str::<Holder>("a: 1\nb: 2\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("additional properties 'a', 'b' not allowed"),
            "{err}"
        );
    }
}
