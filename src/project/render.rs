//! The model printed as `docker compose config` prints it, in YAML or JSON.

use super::model::Project;
use crate::ui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// Renders the project. With `escape_dollars`, a literal `$` is written back as `$$` so
/// that the output, loaded again, interpolates to the same model.
pub fn render(
    project: &Project,
    format: Format,
    escape_dollars: bool,
) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(project)?;
    if escape_dollars {
        escape_dollar_signs(&mut value);
    }
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&value)?,
        Format::Yaml => ui::yaml::to_string(&value),
    })
}

fn escape_dollar_signs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        serde_json::Value::Array(items) => items.iter_mut().for_each(escape_dollar_signs),
        serde_json::Value::Object(map) => map.values_mut().for_each(escape_dollar_signs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model;

    fn project() -> Project {
        let yaml = "name: p\nservices:\n  a:\n    image: busybox\n    command: [echo, \"$HOME costs $5\"]\n";
        model::from_value(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn dollars_are_escaped_unless_asked_not_to() {
        let escaped = render(&project(), Format::Yaml, true).unwrap();
        assert!(escaped.contains("- $$HOME costs $$5\n"), "{escaped}");
        let raw = render(&project(), Format::Json, false).unwrap();
        assert!(raw.contains("\"$HOME costs $5\""), "{raw}");
    }

    #[test]
    fn json_starts_with_name_then_services() {
        let json = render(&project(), Format::Json, true).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "services"]);
    }
}
