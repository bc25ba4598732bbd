//! Customer notices: one template per step × language (Japanese and English
//! shipped under `templates/`, operator-editable), with the category's text
//! chosen inside the template. Rendering is pure; the application layer mails
//! the [`Notice`] (as UTF-8 MIME through its relay) and records the delivery.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, context};

use crate::case::{Customer, Language};
use crate::ladder::Step;
use crate::report::Category;
use crate::time::{FixedOffset, UnixTime, rfc3339};

const BUILTIN: &[(&str, &str)] = &[
    ("ja/warned.txt", include_str!("../templates/ja/warned.txt")),
    (
        "ja/suspended.txt",
        include_str!("../templates/ja/suspended.txt"),
    ),
    (
        "ja/resumed.txt",
        include_str!("../templates/ja/resumed.txt"),
    ),
    (
        "ja/terminated.txt",
        include_str!("../templates/ja/terminated.txt"),
    ),
    ("en/warned.txt", include_str!("../templates/en/warned.txt")),
    (
        "en/suspended.txt",
        include_str!("../templates/en/suspended.txt"),
    ),
    (
        "en/resumed.txt",
        include_str!("../templates/en/resumed.txt"),
    ),
    (
        "en/terminated.txt",
        include_str!("../templates/en/terminated.txt"),
    ),
];

/// A rendered notice, ready to be put into a MIME message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub to: String,
    pub language: Language,
    pub subject: String,
    pub body: String,
}

/// What a notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeFacts {
    pub step: Step,
    pub category: Category,
    pub case_id: Option<i64>,
    pub address: Option<std::net::IpAddr>,
    pub port: Option<u16>,
    pub at: Option<UnixTime>,
    /// When the customer must have answered.
    pub deadline: Option<UnixTime>,
}

/// Who sends notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub isp_name: String,
    pub desk_address: String,
    /// Zone for English notices (Japanese ones are always in JST).
    pub english_zone: FixedOffset,
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("template {name}: {error}")]
    Template { name: String, error: String },
    #[error("no notice for step {0}")]
    NoTemplate(&'static str),
    #[error("template {0} renders no `Subject:` line first")]
    NoSubject(String),
    #[error("reading templates: {0}")]
    Io(String),
}

/// The template set: the shipped one, overridden file by file from a directory.
pub struct Templates {
    env: Environment<'static>,
}

fn category_label(category: Category, language: Language) -> &'static str {
    match (language, category) {
        (Language::Ja, Category::Spam) => "迷惑メールの送信",
        (Language::Ja, Category::Overload) => "設備に負荷を与える大量送信",
        (Language::Ja, Category::Vandalism) => "他者への攻撃・荒らし行為",
        (Language::Ja, Category::Illegal) => "違法行為 (著作権侵害など)",
        (Language::En, Category::Spam) => "spam",
        (Language::En, Category::Overload) => "mass mailing that overloads our equipment",
        (Language::En, Category::Vandalism) => "attacks on or vandalism of other sites",
        (Language::En, Category::Illegal) => "an illegal act (such as copyright infringement)",
    }
}

impl Templates {
    /// The Japanese and English templates shipped with spamgate.
    pub fn builtin() -> Result<Templates, NoticeError> {
        Templates::build(
            BUILTIN
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        )
    }

    /// The shipped set with every `LANG/STEP.txt` found under `dir` replacing its namesake.
    pub fn with_overrides(dir: &Path) -> Result<Templates, NoticeError> {
        let mut sources: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        for (name, source) in sources.iter_mut() {
            let path = dir.join(name.as_str());
            match std::fs::read_to_string(&path) {
                Ok(text) => *source = text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(NoticeError::Io(format!("{}: {e}", path.display()))),
            }
        }
        Templates::build(sources)
    }

    fn build(sources: Vec<(String, String)>) -> Result<Templates, NoticeError> {
        let mut env = Environment::new();
        // A misspelt variable is an operator's error to see, not a blank in a notice.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in sources {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| NoticeError::Template {
                    name,
                    error: e.to_string(),
                })?;
        }
        Ok(Templates { env })
    }

    /// Renders the notice for `customer` in the customer's language.
    pub fn render(
        &self,
        customer: &Customer,
        facts: &NoticeFacts,
        sender: &Sender,
    ) -> Result<Notice, NoticeError> {
        let step = match facts.step {
            Step::None => return Err(NoticeError::NoTemplate("none")),
            other => other.as_str(),
        };
        let language = customer.language;
        let zone = match language {
            Language::Ja => FixedOffset::JST,
            Language::En => sender.english_zone,
        };
        let name = format!("{}/{step}.txt", language.as_str());
        let template = self
            .env
            .get_template(&name)
            .map_err(|e| NoticeError::Template {
                name: name.clone(),
                error: e.to_string(),
            })?;
        let text = template
            .render(context! {
                customer_name => &customer.name,
                customer_id => &customer.id,
                case_id => facts.case_id,
                category => facts.category.as_str(),
                category_label => category_label(facts.category, language),
                address => facts.address.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                port => facts.port,
                time_local => facts.at.map(|t| rfc3339(t, zone)).unwrap_or_else(|| "-".into()),
                deadline_local => facts.deadline.map(|t| rfc3339(t, zone)).unwrap_or_else(|| "-".into()),
                isp_name => &sender.isp_name,
                desk_address => &sender.desk_address,
            })
            .map_err(|e| NoticeError::Template { name: name.clone(), error: e.to_string() })?;
        let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = first
            .strip_prefix("Subject:")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| NoticeError::NoSubject(name.clone()))?;
        Ok(Notice {
            to: customer.contact.clone(),
            language,
            subject: subject.to_string(),
            body: format!("{}\n", body.trim_start_matches('\n').trim_end()),
        })
    }
}
