//! The checked-in JSON Schema must be what the model types generate.
//! Regenerate with `RCOMPOSE_UPDATE_SCHEMA=1 cargo test --test schema`.

use std::path::Path;

#[test]
fn checked_in_schema_matches_the_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/compose-spec.json");
    let generated =
        serde_json::to_string_pretty(&rcompose::project::model::json_schema()).unwrap() + "\n";
    if std::env::var_os("RCOMPOSE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema/compose-spec.json is out of date with the model types; regenerate it with RCOMPOSE_UPDATE_SCHEMA=1 cargo test --test schema"
    );
}

#[test]
fn schema_accepts_short_and_long_syntax_and_rejects_unknown_keys() {
    let schema = rcompose::project::model::json_schema();
    let service = &schema["$defs"]["Service"];
    assert_eq!(service["additionalProperties"], serde_json::json!(false));
    assert!(service["patternProperties"]["^x-"].is_object());
    let ports = serde_json::to_string(&service["properties"]["ports"]).unwrap();
    assert!(
        ports.contains("\"string\"") && ports.contains("\"integer\"") || ports.contains("number"),
        "{ports}"
    );
}
