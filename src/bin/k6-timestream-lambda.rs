//! The Lambda binary: wiring only (configuration, clients, runtime).

use k6_timestream::lambda::config::{LambdaConfig, SinkConfig};
use k6_timestream::lambda::handler::Handler;
use k6_timestream::lambda::invoke::LambdaInvoker;
use k6_timestream::lambda::sink::{InfluxSink, SinkKit};
use k6_timestream::sinks::influxdb::config::Auth;
use k6_timestream::sinks::influxdb::{read_token_secret, InfluxWriter};
use k6_timestream::sinks::timestream::service::{build_client, TimestreamWriter};
use k6_timestream::sources::s3::{S3Put, S3Source};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use std::time::Duration;

// The converter's per-point small allocations run the same in the Lambda
// as in the CLI, where mimalloc measurably speeds conversion up (see
// BENCHMARKS.md); the end-to-end Lambda figure is in the same file.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The InfluxDB probe at init: long enough for a TLS handshake to a
/// server in the same VPC, short enough to leave most of Lambda's 10 s
/// init phase to the rest.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    k6_timestream::lambda::init_tracing();
    let cfg = LambdaConfig::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let s3 = k6_timestream::sources::s3::build_client(&sdk);
    let source = S3Source { client: s3.clone() };
    let put = S3Put { client: s3 };
    let invoker = LambdaInvoker {
        client: aws_sdk_lambda::Client::new(&sdk),
    };
    match &cfg.sink {
        SinkConfig::Timestream => {
            let ts = build_client(&sdk, None).await?;
            let writer = TimestreamWriter::new(ts, cfg.database.clone(), cfg.table.clone());
            Box::pin(serve(Handler {
                writer: Arc::new(writer),
                source,
                put,
                invoker,
                cfg,
            }))
            .await
        }
        SinkConfig::InfluxDb(settings) => {
            let mut influx = settings.config.clone();
            if let Some(arn) = &settings.token_secret_arn {
                let client = aws_sdk_secretsmanager::Client::new(&sdk);
                influx.auth = Auth::Token(read_token_secret(&client, arn).await?);
            }
            influx.timeout = cfg.request_timeout;
            let writer = InfluxWriter::new(&influx)?;
            // A wrong token or a missing database fails the init with one
            // clear message, before any object is read.
            let target = format!("InfluxDB at {} ({})", influx.url, influx.api.target());
            match tokio::time::timeout(PROBE_TIMEOUT, writer.probe()).await {
                Ok(Ok(info)) => tracing::info!(
                    version = info.version.as_deref().unwrap_or("unknown"),
                    "{target}: ready"
                ),
                Ok(Err(e)) => return Err(format!("{target}: {e}").into()),
                Err(_) => {
                    return Err(format!(
                        "{target}: no answer to the probe within {PROBE_TIMEOUT:?} (is the function in the database's VPC, with a security group it accepts?)"
                    )
                    .into())
                }
            }
            let kit = InfluxSink {
                writer: Arc::new(writer),
                encoder: settings.encoder.clone(),
            };
            Box::pin(serve(Handler {
                writer: Arc::new(kit),
                source,
                put,
                invoker,
                cfg,
            }))
            .await
        }
    }
}

/// The runtime loop. (Boxed by the caller: two handler types in one
/// `main` make a future too deep for the compiler's layout query.)
async fn serve<W: SinkKit>(
    handler: Handler<S3Source, W, S3Put, LambdaInvoker>,
) -> Result<(), lambda_runtime::Error> {
    let handler = Arc::new(handler);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        let h = handler.clone();
        async move {
            h.answer(ev.payload, ev.context.deadline())
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
