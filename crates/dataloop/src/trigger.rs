//! Manual triggers (issue item 5; seed ¶42-¶46): a named mining rule or an ad-hoc SQL
//! predicate, with `--param k=v`, runs on the OLAP store; the resulting ID list is written to the
//! file store through `object_store` (a local directory by default, like the seed's AFS
//! location, or an `s3://` prefix) and read back from there before the complex fields are taken
//! from the warehouse.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::{SessionContext, col};
use object_store::ObjectStoreExt as _;
use object_store::path::Path as StorePath;
use object_store::{DynObjectStore, PutPayload};

use crate::config::RuleConfig;
use crate::error::{Error, Result};
use crate::olap::TABLE;
use crate::store::Location;

/// A mining request: rule name or predicate, plus parameters.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct MiningRequest {
    /// A rule name from the config, or a boolean SQL predicate over the `olap` columns.
    pub rule: String,
    /// `{placeholder}` values; numbers are used as numbers, anything else as a quoted string.
    /// Over HTTP a value may be a JSON string, number or boolean.
    #[serde(default, deserialize_with = "scalar_map")]
    pub params: BTreeMap<String, String>,
}

fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::Deserialize as _;
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "parameter `{k}` must be a string or number, got {other}"
            ))),
        })
        .collect()
}

/// A request resolved against the configured rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResolvedRule {
    /// The rule's name, or `adhoc` for a predicate.
    pub name: String,
    /// The predicate with all placeholders filled.
    pub predicate: String,
    /// The parameter values used.
    pub params: BTreeMap<String, String>,
}

/// Resolves `request` against `rules`.
///
/// # Errors
/// [`Error::UnknownRule`] for a bare name that is no rule, [`Error::BadParam`] for unknown or
/// missing parameters and values that are not plain numbers or strings.
pub fn resolve(
    request: &MiningRequest,
    rules: &BTreeMap<String, RuleConfig>,
) -> Result<ResolvedRule> {
    let text = request.rule.trim();
    let is_name = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let (name, template, mut params) = match rules.get(text) {
        Some(rule) => (
            text.to_owned(),
            rule.predicate.clone(),
            rule.params
                .iter()
                .map(|(k, v)| (k.clone(), toml_literal(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        None if is_name => return Err(Error::UnknownRule(text.to_owned())),
        None => ("adhoc".to_owned(), text.to_owned(), BTreeMap::new()),
    };
    let placeholders = placeholders(&template);
    for (k, v) in &request.params {
        if !placeholders.contains(k) {
            return Err(Error::BadParam {
                name: k.clone(),
                reason: format!("the predicate `{template}` has no {{{k}}} placeholder"),
            });
        }
        params.insert(k.clone(), sql_literal(k, v)?);
    }
    let mut predicate = template;
    for p in &placeholders {
        let value = params.get(p).ok_or_else(|| Error::BadParam {
            name: p.clone(),
            reason: "no value given and no default".to_owned(),
        })?;
        predicate = predicate.replace(&format!("{{{p}}}"), value);
    }
    Ok(ResolvedRule {
        name,
        predicate,
        params,
    })
}

fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    out
}

fn toml_literal(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// A parameter value as a SQL literal: a finite number as is, anything else single-quoted with
/// quotes doubled. Control characters are refused.
fn sql_literal(name: &str, value: &str) -> Result<String> {
    if value.chars().any(char::is_control) {
        return Err(Error::BadParam {
            name: name.to_owned(),
            reason: "control characters are not allowed".to_owned(),
        });
    }
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(value.trim().to_owned()),
        _ => Ok(quote(value)),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs the predicate on the OLAP table through DataFusion's expression parser (so the text can
/// only be one boolean expression over `olap`, never another statement) and returns the sorted,
/// distinct clip ids.
///
/// # Errors
/// [`Error::BadPredicate`] when it does not parse as an expression over the table's columns;
/// query errors otherwise.
pub async fn mine(ctx: &SessionContext, predicate: &str) -> Result<Vec<String>> {
    let df = ctx.table(TABLE).await?;
    let expr = df
        .parse_sql_expr(predicate)
        .map_err(|e| Error::BadPredicate {
            predicate: predicate.to_owned(),
            reason: e.to_string(),
        })?;
    let batches = df
        .filter(expr)
        .map_err(|e| Error::BadPredicate {
            predicate: predicate.to_owned(),
            reason: e.to_string(),
        })?
        .select(vec![col("clip_id")])?
        .collect()
        .await?;
    let mut ids = Vec::new();
    for b in &batches {
        let c = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let c = c.as_string::<i32>();
        ids.extend(
            (0..c.len())
                .filter(|&i| !c.is_null(i))
                .map(|i| c.value(i).to_owned()),
        );
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The file store: an `object_store` over a local directory or an `s3://` prefix.
#[derive(Debug, Clone)]
pub struct FileStore {
    store: Arc<DynObjectStore>,
    prefix: StorePath,
    base_url: String,
}

impl FileStore {
    /// A store rooted at `root` (a local directory is created when missing).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Store`] or [`Error::ObjectStore`].
    pub fn open(root: &Location) -> Result<Self> {
        let root = root.prepare()?;
        let (store, prefix) = root.object_store()?;
        let base_url = match &root {
            Location::Local(dir) => format!("file://{}", dir.display()),
            Location::S3 { url, .. } => url.to_string(),
        };
        Ok(Self {
            store,
            prefix,
            base_url,
        })
    }

    fn path(&self, location: &str) -> StorePath {
        location
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), StorePath::join)
    }

    /// Writes `ids` (one per line) at `location` and returns its `file://` or `s3://` URL.
    ///
    /// # Errors
    /// [`Error::ObjectStore`].
    pub async fn put_id_list(&self, location: &str, ids: &[String]) -> Result<String> {
        let mut text = ids.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        self.put(location, text.into_bytes()).await
    }

    /// Writes `bytes` at `location` (atomically: a reader sees the old or the new object) and
    /// returns its URL.
    ///
    /// # Errors
    /// [`Error::ObjectStore`].
    pub async fn put(&self, location: &str, bytes: Vec<u8>) -> Result<String> {
        self.store
            .put(&self.path(location), PutPayload::from(bytes))
            .await?;
        Ok(self.url(location))
    }

    /// Reads an ID list written by [`FileStore::put_id_list`].
    ///
    /// # Errors
    /// [`Error::ObjectStore`].
    pub async fn get_id_list(&self, location: &str) -> Result<Vec<String>> {
        let bytes = self.get(location).await?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Reads the object at `location`.
    ///
    /// # Errors
    /// [`Error::ObjectStore`].
    pub async fn get(&self, location: &str) -> Result<Vec<u8>> {
        let result = self.store.get(&self.path(location)).await?;
        Ok(result.bytes().await?.to_vec())
    }

    /// `file://` or `s3://` URL of `location`.
    pub fn url(&self, location: &str) -> String {
        format!("{}/{location}", self.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BTreeMap<String, RuleConfig> {
        let mut r = BTreeMap::new();
        r.insert(
            "hard_braking".to_owned(),
            RuleConfig {
                description: String::new(),
                predicate: "max_decel_mps2 >= {min} AND object_type = {ty}".to_owned(),
                params: [
                    ("min".to_owned(), toml::Value::Float(2.0)),
                    ("ty".to_owned(), toml::Value::String("vehicle".to_owned())),
                ]
                .into_iter()
                .collect(),
            },
        );
        r
    }

    #[test]
    fn http_params_accept_numbers() {
        let r: MiningRequest =
            serde_json::from_str(r#"{"rule": "x", "params": {"a": 2, "b": "v", "c": 1.5}}"#)
                .unwrap();
        assert_eq!(r.params["a"], "2");
        assert_eq!(r.params["b"], "v");
        assert_eq!(r.params["c"], "1.5");
        assert!(
            serde_json::from_str::<MiningRequest>(r#"{"rule": "x", "params": {"a": [1]}}"#)
                .is_err()
        );
    }

    #[test]
    fn resolve_table() {
        let req = |rule: &str, params: &[(&str, &str)]| MiningRequest {
            rule: rule.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        // (request, expected predicate or error text)
        let cases: Vec<(MiningRequest, std::result::Result<&str, &str>)> = vec![
            (
                req("hard_braking", &[]),
                Ok("max_decel_mps2 >= 2.0 AND object_type = 'vehicle'"),
            ),
            (
                req("hard_braking", &[("min", "3.5")]),
                Ok("max_decel_mps2 >= 3.5 AND object_type = 'vehicle'"),
            ),
            (
                req("hard_braking", &[("ty", "o'neil")]),
                Ok("max_decel_mps2 >= 2.0 AND object_type = 'o''neil'"),
            ),
            (
                req("hard_braking", &[("nope", "1")]),
                Err("no {nope} placeholder"),
            ),
            (
                req("no_such_rule", &[]),
                Err("no mining rule named `no_such_rule`"),
            ),
            (req("ttc_s < 3", &[]), Ok("ttc_s < 3")),
            (req("ttc_s < {t}", &[("t", "2")]), Ok("ttc_s < 2")),
            (req("ttc_s < {t}", &[]), Err("no value given")),
        ];
        for (request, want) in cases {
            match (resolve(&request, &rules()), want) {
                (Ok(r), Ok(p)) => assert_eq!(r.predicate, p, "{request:?}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{request:?}: {e}"),
                (got, want) => panic!("{request:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
