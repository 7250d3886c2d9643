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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::test_http::{sdk_config, Replay};

    fn invoker(replay: &Replay) -> LambdaInvoker {
        let sdk = sdk_config(replay, "eu-west-1", None, None)
            .to_builder()
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        LambdaInvoker {
            client: aws_sdk_lambda::Client::new(&sdk),
        }
    }

    #[tokio::test]
    async fn invoke_is_asynchronous_with_the_payload_as_body() {
        let replay = Replay::default();
        replay.respond(202, &[], "");
        let payload = br#"{"any":"json"}"#.to_vec();
        invoker(&replay)
            .invoke_async("k6-timestream", payload.clone())
            .await
            .unwrap();
        let sent = replay.sent().pop().unwrap();
        assert_eq!(sent.method, "POST");
        assert_eq!(
            sent.uri,
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/k6-timestream/invocations"
        );
        assert_eq!(sent.header("x-amz-invocation-type"), Some("Event"));
        assert_eq!(sent.body, payload);
    }

    #[tokio::test]
    async fn a_refused_invoke_is_an_error() {
        let replay = Replay::default();
        replay.respond(
            429,
            &[("x-amzn-errortype", "TooManyRequestsException")],
            r#"{"message":"Rate exceeded","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}"#,
        );
        let e = invoker(&replay)
            .invoke_async(
                "arn:aws:lambda:eu-west-1:123456789012:function:f",
                b"{}".to_vec(),
            )
            .await
            .unwrap_err();
        assert!(
            e.starts_with("invoking arn:aws:lambda:eu-west-1:123456789012:function:f: "),
            "{e}"
        );
        assert!(e.contains("TooManyRequests"), "{e}");
        // A function ARN is addressed as such.
        assert!(replay.sent()[0].uri.ends_with(
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Af/invocations"
        ));
    }
}
