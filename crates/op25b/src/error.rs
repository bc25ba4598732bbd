use std::fmt;

/// Everything that can go wrong: bad configuration (nothing rendered or applied), or nft
/// refusing or failing.
#[derive(Debug, thiserror::Error)]
pub enum Op25bError {
    #[error("invalid [op25b] configuration:{}", Problems(.0))]
    Invalid(Vec<String>),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Nft {
        command: String,
        status: String,
        stderr: String,
    },
    /// nft did not finish in time and was killed. A load (`nft -f`) is one kernel
    /// transaction: killed, it is either wholly in force or not at all, so the caller
    /// reports failure and the operator looks or runs it again.
    #[error(
        "`{command}` did not finish within nft_timeout ({timeout}) and was killed; \
         a killed load is all or nothing: check with `nft list table` or run it again"
    )]
    Timeout { command: String, timeout: String },
    #[error("`{command}` wrote more than {limit} bytes; output refused")]
    OutputTooLarge { command: String, limit: usize },
    #[error("table inet {table} is not loaded: run `op25b apply` first")]
    TableMissing { table: String },
    #[error("cannot read nft's JSON output: {0}")]
    Json(String),
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}
