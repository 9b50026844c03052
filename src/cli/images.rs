//! `rcompose images`: the images the project's containers were created from, as
//! `docker compose images` lists them: one row per container, with Compose v2's
//! current columns (CONTAINER REPOSITORY TAG PLATFORM IMAGE ID SIZE CREATED), `-q` for
//! the image IDs, `--format json` for one JSON array.

use std::time::SystemTime;

use anyhow::Context;
use rcompose_runtime::image::reference::Reference;
use rcompose_runtime::image::store::{Image, Store, StoreError};
use serde_json::{json, Value};

use super::common::ListFormat;
use super::ps::{human_duration, open_engine, ProjectScope};
use super::GlobalOptions;
use crate::backend::native::NativeEngine;
use crate::ui;
use crate::ui::size::image_size;

#[derive(Debug, Clone, clap::Args)]
pub struct ImagesArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format the output
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// One container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ImageRow {
    container: String,
    /// `<none>` when the container names its image by ID.
    repository: String,
    tag: String,
    platform: String,
    /// `sha256:<hex>`.
    id: String,
    size: u64,
    /// RFC 3339, from the image config.
    created: Option<String>,
}

pub fn run(global: &GlobalOptions, args: &ImagesArgs) -> anyhow::Result<u8> {
    let scope = ProjectScope::find(global)?;
    scope.check_services(&args.services)?;
    let engine = open_engine(global)?;
    let rows = image_rows(&engine, &scope.name, &args.services)?;
    let text = if args.quiet {
        quiet_text(&rows)
    } else {
        match args.format {
            ListFormat::Table => table(&rows, SystemTime::now()),
            ListFormat::Json => format!("{}\n", json_array(&rows)),
        }
    };
    print!("{text}");
    Ok(0)
}

/// Every container of the project (stopped and one-off ones too) of `services` (all
/// when empty), by container name.
fn image_rows(
    engine: &NativeEngine,
    project: &str,
    services: &[String],
) -> anyhow::Result<Vec<ImageRow>> {
    let mut containers = engine
        .list(project)
        .with_context(|| format!("listing the containers of project {project}"))?;
    containers.retain(|c| services.is_empty() || services.contains(&c.service));
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    for container in containers {
        // A container removed meanwhile has no image to show.
        let Ok(record) = engine.runtime().inspect(&container.id) else {
            continue;
        };
        let image = find_image(engine.image_store(), &record.image)
            .with_context(|| format!("container {}: its image {}", container.name, record.image))?;
        rows.push(ImageRow {
            repository: repository_of(&record.image),
            tag: tag_of(&record.image),
            platform: platform_of(engine.image_store(), &image),
            id: image.id.digest().to_string(),
            size: image.size,
            created: image.created.clone(),
            container: container.name,
        });
    }
    Ok(rows)
}

fn find_image(store: &Store, name: &str) -> anyhow::Result<Image> {
    match store.resolve(name) {
        Ok(image) => Ok(image),
        Err(StoreError::ImageNotFound(_)) => anyhow::bail!(
            "not in the image store any more (removed after the container was created): pull it again, or recreate the container"
        ),
        Err(err) => Err(err.into()),
    }
}

/// The repository as Docker shows it (`busybox`, `user/app`, `host:5000/app`);
/// `<none>` when the container names its image by ID.
fn repository_of(name: &str) -> String {
    let Ok(reference) = Reference::parse(name) else {
        return "<none>".to_owned();
    };
    let familiar = reference.familiar();
    let without_digest = familiar.split('@').next().unwrap_or(&familiar);
    match reference.tag() {
        Some(tag) => without_digest
            .strip_suffix(&format!(":{tag}"))
            .unwrap_or(without_digest)
            .to_owned(),
        None => without_digest.to_owned(),
    }
}

fn tag_of(name: &str) -> String {
    Reference::parse(name)
        .ok()
        .and_then(|r| r.tag().map(str::to_owned))
        .unwrap_or_else(|| "<none>".to_owned())
}

/// `os/architecture[/variant]` from the image config; empty when it cannot be read.
fn platform_of(store: &Store, image: &Image) -> String {
    let Ok(config) = store.config(image) else {
        return String::new();
    };
    let mut platform = format!("{}/{}", config.os(), config.architecture());
    if let Some(variant) = config.variant() {
        platform.push('/');
        platform.push_str(variant);
    }
    platform
}

/// `-q`: each image ID once, without its algorithm.
fn quiet_text(rows: &[ImageRow]) -> String {
    let mut ids: Vec<&str> = Vec::new();
    for row in rows {
        let id = row
            .id
            .split_once(':')
            .map_or(row.id.as_str(), |(_, hex)| hex);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.iter().map(|id| format!("{id}\n")).collect()
}

fn table(rows: &[ImageRow], now: SystemTime) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let hex = row
                .id
                .split_once(':')
                .map_or(row.id.as_str(), |(_, hex)| hex);
            vec![
                row.container.clone(),
                row.repository.clone(),
                row.tag.clone(),
                row.platform.clone(),
                hex.chars().take(12).collect(),
                image_size(row.size),
                created_ago(row.created.as_deref(), now),
            ]
        })
        .collect();
    ui::table::render(
        &[
            "CONTAINER",
            "REPOSITORY",
            "TAG",
            "PLATFORM",
            "IMAGE ID",
            "SIZE",
            "CREATED",
        ],
        &cells,
    )
}

/// `--format json`: one array, with the fields of Compose's.
fn json_array(rows: &[ImageRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                let mut object = json!({
                    "ID": row.id,
                    "ContainerName": row.container,
                    "Repository": row.repository,
                    "Tag": row.tag,
                    "Platform": row.platform,
                    "Size": row.size,
                });
                if let Some(created) = &row.created {
                    object["Created"] = json!(created);
                }
                object
            })
            .collect(),
    )
}

/// CREATED: "3 days ago"; `N/A` when the image does not say.
fn created_ago(created: Option<&str>, now: SystemTime) -> String {
    let Some(at) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "N/A".to_owned();
    };
    let at = SystemTime::from(at);
    format!(
        "{} ago",
        human_duration(now.duration_since(at).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(container: &str, id: &str) -> ImageRow {
        ImageRow {
            container: container.into(),
            repository: "busybox".into(),
            tag: "latest".into(),
            platform: "linux/amd64".into(),
            id: format!("sha256:{id}"),
            size: 4_261_000,
            created: Some("2024-01-01T12:00:00Z".into()),
        }
    }

    #[test]
    fn names_split_into_repository_and_tag() {
        assert_eq!(repository_of("busybox"), "busybox");
        assert_eq!(tag_of("busybox"), "latest");
        assert_eq!(repository_of("docker.io/library/mariadb:10.6"), "mariadb");
        assert_eq!(tag_of("docker.io/library/mariadb:10.6"), "10.6");
        assert_eq!(
            repository_of("localhost:5000/team/app:1"),
            "localhost:5000/team/app"
        );
    }

    #[test]
    fn table_and_json_have_compose_columns() {
        let now =
            SystemTime::from(chrono::DateTime::parse_from_rfc3339("2024-01-04T12:00:00Z").unwrap());
        let rows = [
            row("demo-web-1", &"ab".repeat(32)),
            row("demo-db-1", &"ab".repeat(32)),
        ];
        let text = table(&rows, now);
        let mut lines = text.lines();
        assert_eq!(
            lines
                .next()
                .unwrap()
                .split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>(),
            [
                "CONTAINER",
                "REPOSITORY",
                "TAG",
                "PLATFORM",
                "IMAGE ID",
                "SIZE",
                "CREATED"
            ]
        );
        let cells: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "demo-web-1",
                "busybox",
                "latest",
                "linux/amd64",
                "abababababab",
                "4.26MB",
                "3",
                "days",
                "ago"
            ]
        );
        assert_eq!(quiet_text(&rows), format!("{}\n", "ab".repeat(32)));
        let json = json_array(&rows);
        assert_eq!(json[1]["ContainerName"], "demo-db-1");
        assert_eq!(json[0]["Size"], 4_261_000);
        assert_eq!(json[0]["ID"], format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(created_ago(None, now), "N/A");
        assert_eq!(
            created_ago(Some("2024-01-04T11:59:00Z"), now + Duration::from_secs(1)),
            "About a minute ago"
        );
    }
}
