//! Classifying the client from its reverse DNS: the seed's "what spam-sending servers
//! look like".

use serde::Serialize;
use spamgate_rdns::{Classifier, NameClass};

use crate::facts::RdnsFact;

/// The client's class. Everything but [`ClientClass::Proper`] is "suspicious" in the
/// seed's sense and may be greylisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "class", rename_all = "kebab-case")]
pub enum ClientClass {
    /// No PTR record (S25R rule 0).
    NoPtr,
    /// A PTR name that does not resolve back to the client (S25R rule 0 as Postfix sees it).
    PtrNotConfirmed { ptr: String },
    /// The reverse lookup failed temporarily, so nothing is known.
    DnsTempfail { error: String },
    /// The verified name looks like an end-user line.
    Generic { name: String, rule: String },
    /// The verified name looks like a mail server (or is excepted from a generic rule).
    Proper {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        excepted: Option<Exception>,
    },
}

/// A generic rule matched but an exception overrode it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Exception {
    pub rule: String,
    pub exception: String,
}

impl ClientClass {
    pub fn classify(rdns: &RdnsFact, classifier: &Classifier) -> ClientClass {
        match rdns {
            RdnsFact::NoPtr => ClientClass::NoPtr,
            RdnsFact::NotConfirmed { ptr } => ClientClass::PtrNotConfirmed { ptr: ptr.clone() },
            RdnsFact::TempFail { error } => ClientClass::DnsTempfail {
                error: error.clone(),
            },
            RdnsFact::Confirmed { name } => match classifier.classify(name) {
                NameClass::Generic { rule } => ClientClass::Generic {
                    name: name.clone(),
                    rule,
                },
                NameClass::Excepted { rule, exception } => ClientClass::Proper {
                    name: name.clone(),
                    excepted: Some(Exception { rule, exception }),
                },
                NameClass::Proper => ClientClass::Proper {
                    name: name.clone(),
                    excepted: None,
                },
            },
        }
    }

    /// Stable identifier used in config (`greylist.classes`), logs and metrics.
    pub fn id(&self) -> &'static str {
        match self {
            ClientClass::NoPtr => "no-ptr",
            ClientClass::PtrNotConfirmed { .. } => "ptr-not-confirmed",
            ClientClass::DnsTempfail { .. } => "dns-tempfail",
            ClientClass::Generic { .. } => "generic",
            ClientClass::Proper { .. } => "proper",
        }
    }

    /// All class ids, for config validation.
    pub const IDS: [&'static str; 5] = [
        "no-ptr",
        "ptr-not-confirmed",
        "dns-tempfail",
        "generic",
        "proper",
    ];

    /// Short human form for logs: `generic(s25r-1)`, `no-ptr`, ...
    pub fn short(&self) -> String {
        match self {
            ClientClass::Generic { rule, .. } => format!("generic({rule})"),
            ClientClass::Proper {
                excepted: Some(e), ..
            } => format!("proper(excepted:{})", e.exception),
            other => other.id().to_string(),
        }
    }
}
