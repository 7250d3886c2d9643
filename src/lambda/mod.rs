//! The AWS Lambda function: S3 result drop → streamed object → Timestream.

pub mod config;
pub mod emf;
pub mod event;
pub mod handler;

/// Logs through tracing; JSON when the function's log format is JSON
/// (`AWS_LAMBDA_LOG_FORMAT=JSON`), level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::stderr);
    if json {
        b.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        b.init();
    }
}
