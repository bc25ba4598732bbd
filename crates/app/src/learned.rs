//! The operator's commands on learned exemptions (`spamgate learned list|remove|clear`).

use spamgate_engine::UnixTime;
use spamgate_engine::greylist::organisational_domain;
use spamgate_engine::learn::LearnRecord;
use spamgate_store::{LearnAdmin, StoreError};

/// Listings stop here: the store holds at most `max_tracked` records anyway.
pub const LIST_LIMIT: usize = 100_000;

pub struct LearnedService<'a, S> {
    store: &'a S,
}

impl<'a, S: LearnAdmin> LearnedService<'a, S> {
    pub fn new(store: &'a S) -> Self {
        LearnedService { store }
    }

    /// Every organisation followed at `now`, learned ones first.
    pub async fn list(&self, now: UnixTime) -> Result<Vec<LearnRecord>, StoreError> {
        self.store.learned_list(now, LIST_LIMIT).await
    }

    /// Forgets the organisation `domain` belongs to (`mail1.example.co.uk` and
    /// `example.co.uk` both name `example.co.uk`). Returns the organisation and whether it
    /// was there.
    pub async fn remove(&self, domain: &str) -> Result<(String, bool), StoreError> {
        let org = org_of(domain);
        let removed = self.store.learned_remove(&org).await?;
        Ok((org, removed))
    }

    pub async fn clear(&self) -> Result<u64, StoreError> {
        self.store.learned_clear().await
    }
}

/// The organisational domain the operator means.
pub fn org_of(domain: &str) -> String {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    organisational_domain(&domain).unwrap_or(domain)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_map_to_their_organisation() {
        let check = |input: &str, expected: &str| assert_eq!(super::org_of(input), expected);
        check("example.com", "example.com");
        check("Mail1.Out.Example.CO.UK.", "example.co.uk");
        check(" example.ne.jp ", "example.ne.jp");
    }
}
