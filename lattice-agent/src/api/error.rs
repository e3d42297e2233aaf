//! The control API's errors, shaped as Amazon VPC Lattice returns them: an HTTP status,
//! the `x-amzn-ErrorType` header, and a JSON body with `message` and the fields of the
//! exception (`fieldList` for validation, `resourceId`/`resourceType` for not found and
//! conflicts, the quota for quota errors).

use serde_json::{json, Value};

use crate::config::ConfigError;

/// One field of a ValidationException: where in the document, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldProblem {
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request or the document it leads to is invalid.
    #[error("{message}")]
    Validation {
        message: String,
        fields: Vec<FieldProblem>,
    },
    /// 404.
    #[error("{resource_type} {resource_id:?} not found")]
    NotFound {
        resource_type: &'static str,
        resource_id: String,
    },
    /// 409: it exists already, or the document changed since the caller read it.
    #[error("{message}")]
    Conflict {
        message: String,
        resource_type: &'static str,
        resource_id: String,
    },
    /// 402: a Lattice quota would be exceeded.
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        resource_type: &'static str,
    },
    /// 401 (TCP without the token) or 403 (a socket caller that is not root).
    #[error("{message}")]
    AccessDenied { status: u16, message: String },
    /// 500: the change was valid but could not be put in force.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::Validation {
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn field(name: impl Into<String>, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::Validation {
            message: format!("invalid request: {message}"),
            fields: vec![FieldProblem {
                name: name.into(),
                message,
            }],
        }
    }

    /// A document the agent refused: every field error, or a quota error when one of
    /// them is a Lattice quota.
    pub fn refused(error: &anyhow::Error) -> ApiError {
        let config = error.chain().find_map(|e| e.downcast_ref::<ConfigError>());
        let errors = config.map(|c| c.field_errors()).unwrap_or_default();
        let problem = |f: &crate::config::FieldError| FieldProblem {
            name: format!("{} {}: {}", f.kind, f.name, f.field),
            message: f.message.clone(),
        };
        if let Some(quota) = errors.iter().find(|f| f.quota).map(problem) {
            return ApiError::QuotaExceeded {
                message: format!("{}: {}", quota.name, quota.message),
                resource_type: "document",
            };
        }
        let fields: Vec<FieldProblem> = errors.iter().map(problem).collect();
        ApiError::Validation {
            message: format!("{error:#}"),
            fields,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation { .. } => 400,
            ApiError::NotFound { .. } => 404,
            ApiError::Conflict { .. } => 409,
            ApiError::QuotaExceeded { .. } => 402,
            ApiError::AccessDenied { status, .. } => *status,
            ApiError::Internal(_) => 500,
        }
    }

    /// Lattice's exception name (`x-amzn-ErrorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "ValidationException",
            ApiError::NotFound { .. } => "ResourceNotFoundException",
            ApiError::Conflict { .. } => "ConflictException",
            ApiError::QuotaExceeded { .. } => "ServiceQuotaExceededException",
            ApiError::AccessDenied { .. } => "AccessDeniedException",
            ApiError::Internal(_) => "InternalServerException",
        }
    }

    pub fn body(&self) -> Value {
        let message = self.to_string();
        match self {
            ApiError::Validation { fields, .. } => json!({
                "message": message,
                "reason": if fields.is_empty() { "other" } else { "fieldValidationFailed" },
                "fieldList": fields,
            }),
            ApiError::NotFound {
                resource_type,
                resource_id,
            }
            | ApiError::Conflict {
                resource_type,
                resource_id,
                ..
            } => json!({
                "message": message,
                "resourceType": resource_type,
                "resourceId": resource_id,
            }),
            ApiError::QuotaExceeded { resource_type, .. } => json!({
                "message": message,
                "resourceType": resource_type,
                "serviceCode": "vpc-lattice",
            }),
            ApiError::AccessDenied { .. } | ApiError::Internal(_) => json!({ "message": message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_doc(services: &str) -> ApiError {
        let text = format!(
            r#"
accounts: [{{ id: "111111111111" }}]
vpcs: []
serviceNetworks: []
services:
{services}
targetGroups: []
"#
        );
        let error = crate::config::parse_str(&text, std::path::Path::new("api")).unwrap_err();
        ApiError::refused(&anyhow::Error::new(error))
    }

    #[test]
    fn a_quota_is_told_by_the_validator_not_by_a_word_in_the_message() {
        let listener = |name: &str, port: u16| {
            format!("      - {{ name: {name}, protocol: HTTP, port: {port}, defaultAction: {{ fixedResponse: {{ statusCode: 404 }} }} }}\n")
        };
        let three = format!(
            "  - name: orders\n    account: \"111111111111\"\n    listeners:\n{}{}{}",
            listener("one", 80),
            listener("two", 81),
            listener("three", 82)
        );
        let past_quota = refused_doc(&three);
        assert_eq!(past_quota.status(), 402, "{past_quota}");
        // A name with "quota" in it, in an error that is no quota's: 400.
        let missing = "  - name: orders\n    account: \"111111111111\"\n    listeners:\n      - { name: http, protocol: HTTP, port: 80, defaultAction: { forward: { targetGroups: [{ targetGroupIdentifier: quota-tg }] } } }\n";
        let invalid = refused_doc(missing);
        assert_eq!(invalid.status(), 400, "{invalid}");
        assert!(invalid.to_string().contains("quota-tg"), "{invalid}");
    }
}
