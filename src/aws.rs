//! Small helpers shared by the AWS clients (S3, Timestream, Lambda).

/// Formats an error with its sources, `a: b: c`.
pub struct DisplayErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}
