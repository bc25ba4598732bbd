//! DNS as the application needs it, so tests and benchmarks can put anything behind it.

use std::future::Future;
use std::net::IpAddr;

use spamgate_dns::{Dns, ListResult, Rdns, SpfOutcome, ZoneSpec};
use spamgate_engine::facts::{ListAnswer, RdnsFact};

pub trait Resolver: Send + Sync + 'static {
    fn list(&self, zone: &ZoneSpec, client: IpAddr) -> impl Future<Output = ListAnswer> + Send;
    fn rdns(&self, client: IpAddr) -> impl Future<Output = RdnsFact> + Send;
    /// SPF `check_host()` for `client` and the envelope sender's domain.
    fn spf(&self, client: IpAddr, domain: &str) -> impl Future<Output = SpfOutcome> + Send;
}

impl Resolver for Dns {
    async fn list(&self, zone: &ZoneSpec, client: IpAddr) -> ListAnswer {
        match self.list_lookup(zone, client).await {
            ListResult::NotListed => ListAnswer::NotListed,
            ListResult::Listed { answers, txt } => ListAnswer::Listed { answers, txt },
            ListResult::Error(error) => ListAnswer::Error { error },
        }
    }

    async fn rdns(&self, client: IpAddr) -> RdnsFact {
        match self.reverse_confirm(client).await {
            Rdns::Confirmed { name } => RdnsFact::Confirmed { name },
            Rdns::NotConfirmed { ptr } => RdnsFact::NotConfirmed { ptr },
            Rdns::NoPtr => RdnsFact::NoPtr,
            Rdns::TempFail(error) => RdnsFact::TempFail { error },
        }
    }

    async fn spf(&self, client: IpAddr, domain: &str) -> SpfOutcome {
        self.spf_check(client, domain).await
    }
}
