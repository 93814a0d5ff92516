//! Logging: plain text for people, JSON for log pipelines. `RUST_LOG` refines the level.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// The crates of the AWS SDK and its HTTP stack that log credentials when tracing.
const SECRET_BEARING_TARGETS: &[&str] = &[
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_runtime",
    "aws_config",
    "aws_credential_types",
    "hyper",
    "hyper_util",
    "h2",
];

/// Installs the global subscriber. Logs go to stderr so that commands can print results on
/// stdout.
pub fn init(format: LogFormat, default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // At trace level these write whole requests and signing material (session tokens among
    // them): never more than debug, whatever RUST_LOG asks for. (Only a filter that allows
    // trace somewhere gets the caps: a cap is itself a directive, and would raise a quieter
    // level to debug.)
    let traces = filter
        .max_level_hint()
        .is_none_or(|level| level >= tracing_subscriber::filter::LevelFilter::TRACE);
    if traces {
        for target in SECRET_BEARING_TARGETS {
            if let Ok(directive) = format!("{target}=debug").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    // Colour only for a person at a terminal: `kubectl logs` and files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
