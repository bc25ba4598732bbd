//! Customers, and cases: reports folded per (customer, category) within a window.

use serde::{Deserialize, Serialize};

use crate::report::Category;
use crate::time::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ja,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ja => "ja",
            Language::En => "en",
        }
    }

    pub fn parse(text: &str) -> Option<Language> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ja" => Some(Language::Ja),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// Service status, mirrored from the customer's ladder step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CustomerStatus {
    Active,
    Suspended,
    Terminated,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerStatus::Active => "active",
            CustomerStatus::Suspended => "suspended",
            CustomerStatus::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<CustomerStatus> {
        match text {
            "active" => Some(CustomerStatus::Active),
            "suspended" => Some(CustomerStatus::Suspended),
            "terminated" => Some(CustomerStatus::Terminated),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// Where notices go (an e-mail address).
    pub contact: String,
    pub language: Language,
    pub plan: String,
    pub status: CustomerStatus,
}

/// Reads `customer import` CSV: `id,name,contact,language,plan` (a header line
/// starting with `id` is skipped; `#` lines are comments). New customers are active.
/// Names with commas are not supported: the format is what provisioning exports.
pub fn parse_customers_csv(text: &str) -> (Vec<Customer>, Vec<(usize, String)>) {
    let mut customers = Vec::new();
    let mut rejected = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("id,") {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let [id, name, contact, language, plan] = cells.as_slice() else {
            rejected.push((number + 1, "expected id,name,contact,language,plan".into()));
            continue;
        };
        let Some(language) = Language::parse(language) else {
            rejected.push((
                number + 1,
                format!("language must be ja or en, not {language:?}"),
            ));
            continue;
        };
        if id.is_empty() || !contact.contains('@') {
            rejected.push((number + 1, "empty id or contact without @".into()));
            continue;
        }
        customers.push(Customer {
            id: id.to_string(),
            name: name.to_string(),
            contact: contact.to_string(),
            language,
            plan: plan.to_string(),
            status: CustomerStatus::Active,
        });
    }
    (customers, rejected)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CaseState {
    /// Collecting reports; nobody has looked yet.
    Open,
    /// A person (or a rule) confirmed it: it counts as a strike.
    Confirmed,
    Closed,
    /// Not abuse after all (a false report); never a strike.
    Dismissed,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Confirmed => "confirmed",
            CaseState::Closed => "closed",
            CaseState::Dismissed => "dismissed",
        }
    }

    pub fn parse(text: &str) -> Option<CaseState> {
        match text {
            "open" => Some(CaseState::Open),
            "confirmed" => Some(CaseState::Confirmed),
            "closed" => Some(CaseState::Closed),
            "dismissed" => Some(CaseState::Dismissed),
            _ => None,
        }
    }

    /// A case that still takes new reports.
    pub fn is_active(self) -> bool {
        matches!(self, CaseState::Open | CaseState::Confirmed)
    }
}

pub type CaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Case {
    pub id: CaseId,
    pub customer: String,
    pub category: Category,
    pub state: CaseState,
    pub opened_at: UnixTime,
    pub last_report_at: UnixTime,
    /// Every report folded in, duplicates included.
    pub report_ids: Vec<i64>,
    /// Reports whose original Message-ID the case had already seen.
    pub duplicate_count: u32,
    /// Original Message-IDs seen, for duplicate detection.
    pub message_ids: Vec<String>,
}

impl Case {
    /// A new case opened by its first report.
    pub fn open(
        id: CaseId,
        customer: &str,
        category: Category,
        report_id: i64,
        message_id: Option<&str>,
        at: UnixTime,
    ) -> Case {
        Case {
            id,
            customer: customer.to_string(),
            category,
            state: CaseState::Open,
            opened_at: at,
            last_report_at: at,
            report_ids: vec![report_id],
            duplicate_count: 0,
            message_ids: message_id.map(str::to_string).into_iter().collect(),
        }
    }

    /// Adds a report the fold sent here.
    pub fn add_report(&mut self, report_id: i64, message_id: Option<&str>, at: UnixTime) {
        if self.report_ids.contains(&report_id) {
            return;
        }
        self.report_ids.push(report_id);
        self.last_report_at = self.last_report_at.max(at);
        match message_id {
            Some(id) if self.message_ids.iter().any(|m| m == id) => self.duplicate_count += 1,
            Some(id) => self.message_ids.push(id.to_string()),
            None => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldPolicy {
    /// A report joins a case of the same (customer, category) whose last
    /// report is at most this many seconds older.
    pub window: i64,
}

impl Default for FoldPolicy {
    fn default() -> Self {
        FoldPolicy { window: 7 * 86_400 }
    }
}

/// Where a new report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "fold")]
pub enum Fold {
    /// Open a new case.
    NewCase,
    /// Join this case.
    Attach { case_id: CaseId },
    /// The same spam reported again: counted on this case, opens nothing.
    Duplicate { case_id: CaseId },
}

/// Decides where a report for `customer` and `category` goes, given that
/// customer's cases.
pub fn fold(
    cases: &[Case],
    customer: &str,
    category: Category,
    message_id: Option<&str>,
    at: UnixTime,
    policy: &FoldPolicy,
) -> Fold {
    let mine = || cases.iter().filter(|c| c.customer == customer);
    if let Some(id) = message_id
        && let Some(case) = mine()
            .filter(|c| c.message_ids.iter().any(|m| m == id))
            .max_by_key(|c| c.last_report_at)
    {
        return Fold::Duplicate { case_id: case.id };
    }
    mine()
        .filter(|c| c.category == category && c.state.is_active())
        .filter(|c| at.saturating_sub(c.last_report_at) <= policy.window)
        .max_by_key(|c| c.last_report_at)
        .map_or(Fold::NewCase, |c| Fold::Attach { case_id: c.id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cases: &[Case], category: Category, message_id: Option<&str>, at: i64, want: Fold) {
        let got = fold(
            cases,
            "C1",
            category,
            message_id,
            at,
            &FoldPolicy::default(),
        );
        assert_eq!(got, want, "{category:?} {message_id:?} @{at}");
    }

    #[test]
    fn reports_fold_into_cases() {
        let day = 86_400;
        let spam = Case::open(1, "C1", Category::Spam, 10, Some("<a@x>"), 0);
        let mut closed = Case::open(2, "C1", Category::Illegal, 11, Some("<b@x>"), 0);
        closed.state = CaseState::Closed;
        let other = Case::open(3, "C2", Category::Spam, 12, Some("<c@x>"), 0);
        let cases = vec![spam, closed, other];
        let table = [
            (
                Category::Spam,
                Some("<new@x>"),
                day,
                Fold::Attach { case_id: 1 },
            ),
            (Category::Spam, None, 7 * day, Fold::Attach { case_id: 1 }),
            (Category::Spam, None, 7 * day + 1, Fold::NewCase),
            (
                Category::Spam,
                Some("<a@x>"),
                30 * day,
                Fold::Duplicate { case_id: 1 },
            ),
            (Category::Overload, None, day, Fold::NewCase),
            // A closed case takes nothing new, but still knows its spam.
            (Category::Illegal, None, day, Fold::NewCase),
            (
                Category::Illegal,
                Some("<b@x>"),
                day,
                Fold::Duplicate { case_id: 2 },
            ),
            // Another customer's Message-ID is not a duplicate for C1.
            (
                Category::Spam,
                Some("<c@x>"),
                day,
                Fold::Attach { case_id: 1 },
            ),
        ];
        for (category, message_id, at, want) in table {
            check(&cases, category, message_id, at, want);
        }
    }

    #[test]
    fn duplicates_count_on_the_case() {
        let mut case = Case::open(1, "C1", Category::Spam, 10, Some("<a@x>"), 0);
        case.add_report(11, Some("<a@x>"), 5);
        case.add_report(12, Some("<b@x>"), 6);
        case.add_report(12, Some("<b@x>"), 6);
        assert_eq!(case.report_ids, vec![10, 11, 12]);
        assert_eq!(case.duplicate_count, 1);
        assert_eq!(case.last_report_at, 6);
    }

    #[test]
    fn customer_csv() {
        let (ok, bad) = parse_customers_csv(
            "id,name,contact,language,plan\nC1,Taro,taro@example.jp,ja,home\nC2,Ann,ann@example.com,EN,biz\nC3,x,nobody,ja,home\nC4,y,y@example.jp,fr,home\n",
        );
        assert_eq!(
            ok.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["C1", "C2"]
        );
        assert_eq!(ok[1].language, Language::En);
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [4, 5]);
    }
}
