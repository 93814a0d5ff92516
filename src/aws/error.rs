//! One error type for every AWS call, classified once: throttling is a kind of error, not a
//! string match scattered through the code.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The error codes AWS services use for "slow down" (the SDKs' own list).
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Errors that are worth trying again as they are.
const TRANSIENT_CODES: &[&str] = &[
    "InternalFailure",
    "InternalServerException",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service asked us to slow down.
    Throttled,
    /// A 5xx or a dropped connection.
    Transient,
    /// No answer in time: connecting, or one attempt, took longer than allowed.
    TimedOut,
    AccessDenied,
    NotFound,
    /// A concurrent operation on the same resource.
    Conflict,
    /// The credentials could not be obtained (a hop of the role chain failed).
    Credentials,
    /// The request was refused as invalid.
    Invalid,
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::TimedOut => "timed_out",
            Self::AccessDenied => "access_denied",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Credentials => "credentials",
            Self::Invalid => "invalid",
            Self::Other => "other",
        }
    }
}

/// A failed AWS call, naming the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    pub operation: &'static str,
    pub kind: ErrorKind,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// The messages of an error and its sources, joined: what a person needs, without the debug
/// dumps of raw responses that the SDK's own display context appends.
pub fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last() != Some(&text) && !text.is_empty() {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Classifies an error code (and HTTP status, when known).
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) => ErrorKind::Throttled,
        Some(c) if TRANSIENT_CODES.contains(&c) => ErrorKind::Transient,
        Some(c)
            if c.contains("AccessDenied")
                || c == "UnauthorizedOperation"
                || c == "ExpiredToken"
                || c == "InvalidClientTokenId" =>
        {
            ErrorKind::AccessDenied
        }
        Some(c) if c.contains("NotFound") || c == "NoSuchEntity" || c.starts_with("NoSuch") => {
            ErrorKind::NotFound
        }
        Some(c)
            if c.starts_with("Conflict")
                || c == "EntityAlreadyExists"
                || c == "ConcurrentModification"
                || c == "ConcurrentModificationException" =>
        {
            ErrorKind::Conflict
        }
        Some(c)
            if c.starts_with("Validation")
                || c.starts_with("Invalid")
                || c.starts_with("Malformed") =>
        {
            ErrorKind::Invalid
        }
        _ => match status {
            Some(429) => ErrorKind::Throttled,
            Some(s) if s >= 500 => ErrorKind::Transient,
            Some(403) => ErrorKind::AccessDenied,
            Some(404) => ErrorKind::NotFound,
            Some(409) => ErrorKind::Conflict,
            _ => ErrorKind::Other,
        },
    }
}

impl AwsError {
    pub fn new(operation: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            code: None,
            message: message.into(),
            request_id: None,
        }
    }

    /// Converts any SDK error of `operation`.
    pub fn from_sdk<E>(
        operation: &'static str,
        error: SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &error {
            SdkError::ServiceError(context) => {
                let meta = context.err().meta();
                let status = context.raw().status().as_u16();
                let code = meta.code().map(str::to_string);
                Self {
                    operation,
                    kind: classify(code.as_deref(), Some(status)),
                    message: meta.message().unwrap_or("no message").to_string(),
                    request_id: meta.extra("aws_request_id").map(str::to_string),
                    code,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                // A credentials failure surfaces as a dispatch failure; keep the whole chain so
                // that the hop that failed is named.
                let chain = describe_chain(&error);
                let timed_out = match &error {
                    SdkError::TimeoutError(_) => true,
                    SdkError::DispatchFailure(failure) => failure.is_timeout(),
                    _ => false,
                };
                let kind = if chain.contains("credentials") {
                    ErrorKind::Credentials
                } else if timed_out {
                    ErrorKind::TimedOut
                } else {
                    ErrorKind::Transient
                };
                Self::new(operation, kind, chain)
            }
            SdkError::ConstructionFailure(_) => {
                let chain = describe_chain(&error);
                let kind = if chain.contains("credentials") {
                    ErrorKind::Credentials
                } else {
                    ErrorKind::Invalid
                };
                Self::new(operation, kind, chain)
            }
            _ => Self::new(operation, ErrorKind::Other, describe_chain(&error)),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::Transient | ErrorKind::TimedOut
        )
    }

    pub fn is_throttling(&self) -> bool {
        self.kind == ErrorKind::Throttled
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        self.kind.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_and_statuses() {
        for code in THROTTLING_CODES {
            assert_eq!(
                classify(Some(code), Some(400)),
                ErrorKind::Throttled,
                "{code}"
            );
        }
        assert_eq!(
            classify(Some("AccessDenied"), Some(403)),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify(Some("AccessDeniedException"), Some(400)),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify(Some("ResourceNotFoundException"), Some(400)),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("NoSuchEntity"), Some(404)),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("ConflictException"), Some(400)),
            ErrorKind::Conflict
        );
        assert_eq!(
            classify(Some("ValidationException"), Some(400)),
            ErrorKind::Invalid
        );
        assert_eq!(
            classify(Some("InternalServerException"), Some(500)),
            ErrorKind::Transient
        );
        assert_eq!(classify(None, Some(503)), ErrorKind::Transient);
        assert_eq!(classify(None, Some(429)), ErrorKind::Throttled);
        assert_eq!(classify(Some("Whatever"), Some(400)), ErrorKind::Other);
    }

    #[test]
    fn only_throttling_and_transient_errors_are_retried() {
        let e = |kind| AwsError::new("ListUsers", kind, "m");
        assert!(e(ErrorKind::Throttled).is_retryable());
        assert!(e(ErrorKind::Transient).is_retryable());
        for kind in [
            ErrorKind::AccessDenied,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Invalid,
            ErrorKind::Other,
            ErrorKind::Credentials,
        ] {
            assert!(!e(kind).is_retryable(), "{kind:?}");
        }
        let shown = AwsError {
            code: Some("Throttling".into()),
            request_id: Some("r-1".into()),
            ..e(ErrorKind::Throttled)
        };
        assert_eq!(shown.to_string(), "ListUsers: Throttling: m (request r-1)");
    }
}
