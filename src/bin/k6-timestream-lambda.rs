//! The Lambda binary: wiring only (configuration, clients, runtime).

use k6_timestream::lambda::config::LambdaConfig;
use k6_timestream::lambda::handler::Handler;
use k6_timestream::lambda::invoke::LambdaInvoker;
use k6_timestream::sinks::timestream::service::{build_client, TimestreamWriter};
use k6_timestream::sources::s3::{S3Put, S3Source};
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

// The converter's per-point small allocations run the same in the Lambda
// as in the CLI, where mimalloc measurably speeds conversion up (see
// BENCHMARKS.md); the end-to-end Lambda figure is in the same file.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    k6_timestream::lambda::init_tracing();
    let cfg = LambdaConfig::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ts = build_client(&sdk, None).await?;
    let s3 = k6_timestream::sources::s3::build_client(&sdk);
    let handler = Arc::new(Handler {
        writer: Arc::new(TimestreamWriter::new(
            ts,
            cfg.database.clone(),
            cfg.table.clone(),
        )),
        source: S3Source { client: s3.clone() },
        put: S3Put { client: s3 },
        invoker: LambdaInvoker {
            client: aws_sdk_lambda::Client::new(&sdk),
        },
        cfg,
    });
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
