use serde::{Deserialize, Serialize};
use svckit::config::{ConfigError, Sources, load};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Config {
    listen: String,
    tracker: Tracker,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Tracker {
    min_substreams: u32,
    max_substreams: u32,
    urgent_zone_blocks: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            tracker: Tracker::default(),
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            min_substreams: 2,
            max_substreams: 16,
            urgent_zone_blocks: 2,
        }
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn layers_apply_in_order_defaults_embedded_file_env_cli() {
    // figment's Jail sets environment variables for the closure only, and serialises the tests
    // that use it.
    figment::Jail::expect_with(|jail| {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "app.toml",
            "listen = \"127.0.0.1:9000\"\n[tracker]\nmax_substreams = 8\nmin_substreams = 3\n",
        );
        jail.set_env("SVCKIT_LAYERS_TRACKER__MIN_SUBSTREAMS", "5");
        jail.set_env("SVCKIT_LAYERS_TRACKER__MAX_SUBSTREAMS", "10");
        let sources = Sources::new()
            .embedded("[tracker]\nurgent_zone_blocks = 4\nmin_substreams = 1\n")
            .file(Some(&file))
            .env_prefix("SVCKIT_LAYERS_")
            .overrides(&["tracker.max_substreams=12".to_owned()]);
        let config: Config = load(&sources).unwrap();
        assert_eq!(
            config,
            Config {
                listen: "127.0.0.1:9000".to_owned(),
                tracker: Tracker {
                    min_substreams: 5,
                    max_substreams: 12,
                    urgent_zone_blocks: 4
                },
            }
        );
        Ok(())
    });
}

#[test]
fn bad_environment_value_names_the_variable_layer() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SVCKIT_BADENV_TRACKER__URGENT_ZONE_BLOCKS", "soon");
        let error = load::<Config>(&Sources::new().env_prefix("SVCKIT_BADENV_")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("tracker.urgent_zone_blocks"), "{message}");
        assert!(message.to_lowercase().contains("environment"), "{message}");
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "typo.toml", "[tracker]\nmax_substream = 8\n");
    let error = load::<Config>(&Sources::new().file(Some(&file))).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("max_substream"), "{message}");
    assert!(message.contains("typo.toml"), "{message}");
    assert!(matches!(error, ConfigError::Invalid { .. }));
}

#[test]
fn wrong_type_names_key_and_layer() {
    let error =
        load::<Config>(&Sources::new().overrides(&["tracker.max_substreams=lots".to_owned()]))
            .unwrap_err();
    let ConfigError::Invalid { key, .. } = &error else {
        panic!("unexpected {error:?}")
    };
    assert_eq!(key.as_deref(), Some("tracker.max_substreams"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "bad.toml", "[tracker]\nmax_substreams = \"many\"\n");
    let message = load::<Config>(&Sources::new().file(Some(&file)))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("tracker.max_substreams") && message.contains("bad.toml"),
        "{message}"
    );
}

#[test]
fn malformed_toml_and_missing_file_and_bad_override_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "broken.toml", "[tracker\nmax_substreams = 8\n");
    let message = load::<Config>(&Sources::new().file(Some(&file)))
        .unwrap_err()
        .to_string();
    assert!(message.contains("broken.toml"), "{message}");

    let missing = dir.path().join("absent.toml");
    let error = load::<Config>(&Sources::new().file(Some(&missing))).unwrap_err();
    assert!(matches!(error, ConfigError::Unreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.toml"));

    let error =
        load::<Config>(&Sources::new().overrides(&["no-equals-sign".to_owned()])).unwrap_err();
    assert!(matches!(error, ConfigError::BadOverride(_)), "{error:?}");
}
