//! The kinds of objects that hold rows, and how an incoming row names its object.

use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Experiment,
    Dataset,
    ProjectLogs,
    Prompt,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::Dataset => "dataset",
            Self::ProjectLogs => "project_logs",
            Self::Prompt => "prompt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "experiment" => Self::Experiment,
            "dataset" => Self::Dataset,
            "project_logs" => Self::ProjectLogs,
            "prompt" => Self::Prompt,
            _ => return None,
        })
    }

    /// The row field that carries this object's id on the wire.
    pub fn id_field(self) -> &'static str {
        match self {
            Self::Experiment => "experiment_id",
            Self::Dataset => "dataset_id",
            Self::ProjectLogs => "project_id",
            Self::Prompt => "prompt_id",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a logged row belongs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowTarget {
    pub object_type: ObjectType,
    pub object_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("row names no object: set experiment_id, dataset_id, or project_id with log_id \"g\"")]
    Missing,
    #[error("row names more than one object ({0})")]
    Ambiguous(String),
    #[error("field `{0}` must be a non-empty string")]
    BadId(&'static str),
    #[error("log_id {0:?} is not supported (only \"g\" project logs)")]
    UnsupportedLogId(String),
}

/// Reads the object-routing fields of a row (`experiment_id`, `dataset_id`, or
/// `project_id` + `log_id: "g"`).
pub fn row_target(row: &Map<String, Value>) -> Result<RowTarget, TargetError> {
    let id = |field: &'static str| -> Result<Option<String>, TargetError> {
        match row.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(TargetError::BadId(field)),
        }
    };
    let experiment = id("experiment_id")?;
    let dataset = id("dataset_id")?;
    let log_id = id("log_id")?;
    let project = id("project_id")?;
    let mut found = Vec::new();
    if let Some(e) = experiment {
        found.push(RowTarget {
            object_type: ObjectType::Experiment,
            object_id: e,
        });
    }
    if let Some(d) = dataset {
        found.push(RowTarget {
            object_type: ObjectType::Dataset,
            object_id: d,
        });
    }
    match (log_id.as_deref(), project) {
        (Some("g"), Some(p)) => found.push(RowTarget {
            object_type: ObjectType::ProjectLogs,
            object_id: p,
        }),
        (Some("g"), None) => return Err(TargetError::BadId("project_id")),
        (Some(other), _) => return Err(TargetError::UnsupportedLogId(other.to_owned())),
        (None, _) => {}
    }
    match found.len() {
        0 => Err(TargetError::Missing),
        1 => found.pop().ok_or(TargetError::Missing),
        _ => Err(TargetError::Ambiguous(
            found
                .iter()
                .map(|t| t.object_type.id_field())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(v: Value) -> Result<RowTarget, TargetError> {
        row_target(v.as_object().unwrap())
    }

    #[test]
    fn routes_rows_by_object_fields() {
        assert_eq!(
            target(json!({"experiment_id":"e"})).unwrap().object_type,
            ObjectType::Experiment
        );
        assert_eq!(
            target(json!({"dataset_id":"d","project_id":"p"}))
                .unwrap()
                .object_id,
            "d"
        );
        assert_eq!(
            target(json!({"project_id":"p","log_id":"g"}))
                .unwrap()
                .object_type,
            ObjectType::ProjectLogs
        );
        assert_eq!(target(json!({"project_id":"p"})), Err(TargetError::Missing));
        assert!(target(json!({"experiment_id":"e","dataset_id":"d"})).is_err());
        assert!(target(json!({"experiment_id":7})).is_err());
        assert!(target(json!({"project_id":"p","log_id":"x"})).is_err());
    }
}
