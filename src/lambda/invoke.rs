//! Starting another invocation of this function without waiting for it:
//! the engine of continuations.

use std::future::Future;

/// Starts another invocation of the function without waiting for it.
pub trait Invoker: Send + Sync + 'static {
    fn invoke_async(
        &self,
        function: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// `lambda:InvokeFunction` with `InvocationType=Event`.
pub struct LambdaInvoker {
    pub client: aws_sdk_lambda::Client,
}

impl Invoker for LambdaInvoker {
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), String> {
        let out = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| format!("invoking {function}: {}", crate::aws::DisplayErrorChain(&e)))?;
        match out.status_code() {
            200..=299 => Ok(()),
            s => Err(format!("invoking {function}: status {s}")),
        }
    }
}
