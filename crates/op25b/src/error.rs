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
