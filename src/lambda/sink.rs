//! What the handler needs of a sink, chosen once at init: an encoder per
//! object and the service that sends its requests.

use super::config::LambdaConfig;
use crate::core::pipeline::Encoder;
use crate::sinks::influxdb::{EncoderOptions, InfluxEncoder, InfluxRequest, InfluxWriter};
use crate::sinks::timestream::{Batcher, WriteRequest};
use crate::sinks::{Request, Service};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// A sink as the handler uses it.
pub trait SinkKit: Send + Sync + 'static {
    /// Serialisable, like the encoder: both go into checkpoints.
    type Request: Request + Serialize + DeserializeOwned;
    type Encoder: Encoder<Request = Self::Request> + Serialize + DeserializeOwned + Send + 'static;
    type Service: Service<Self::Request>;
    /// A fresh encoder for one object.
    fn encoder(&self, cfg: &LambdaConfig) -> Self::Encoder;
    /// The service every object's requests go through.
    fn service(kit: &Arc<Self>) -> Arc<Self::Service>;
}

/// Timestream: any service of its requests is its own kit (the SDK
/// writer, and the handler's test doubles).
impl<W: Service<WriteRequest>> SinkKit for W {
    type Request = WriteRequest;
    type Encoder = Batcher;
    type Service = W;
    fn encoder(&self, cfg: &LambdaConfig) -> Batcher {
        Batcher::new(cfg.model, cfg.collision_window_secs)
    }
    fn service(kit: &Arc<Self>) -> Arc<W> {
        kit.clone()
    }
}

/// InfluxDB: the probed writer and how records become lines.
pub struct InfluxSink {
    pub writer: Arc<InfluxWriter>,
    pub encoder: EncoderOptions,
}

impl SinkKit for InfluxSink {
    type Request = InfluxRequest;
    type Encoder = InfluxEncoder;
    type Service = InfluxWriter;
    fn encoder(&self, cfg: &LambdaConfig) -> InfluxEncoder {
        InfluxEncoder::new(self.encoder.clone(), cfg.collision_window_secs)
    }
    fn service(kit: &Arc<Self>) -> Arc<InfluxWriter> {
        kit.writer.clone()
    }
}
