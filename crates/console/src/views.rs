//! The templates, embedded in the binary, and the one render function every page uses.
//! Autoescaping is on for every template (`.html`): values are text; only the SVG the
//! [`chart`](crate::chart) module built (escaped there) is inserted with `| safe`.

use std::sync::OnceLock;

use minijinja::{Environment, State, Value};

use crate::i18n::Lang;

pub const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("message.html", include_str!("../templates/message.html")),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
    ("filters.html", include_str!("../templates/filters.html")),
    ("classify.html", include_str!("../templates/classify.html")),
    (
        "classify_form.html",
        include_str!("../templates/classify_form.html"),
    ),
    ("desk.html", include_str!("../templates/desk.html")),
    ("case.html", include_str!("../templates/case.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The shipped templates are checked by the tests; a broken one is a build bug.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env.add_function("t", translate);
        env
    })
}

/// `t("key")` in a template: the text in the page's language (`lang` in the context).
fn translate(state: &State, key: &str) -> String {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::parse))
        .unwrap_or(Lang::En);
    lang.t(key).to_string()
}

/// Renders `name` with `context` (a map; `lang` is added). A rendering error is a
/// page that says so, never a panic.
pub fn render(name: &str, lang: Lang, context: Value) -> String {
    let context = minijinja::context! { lang => lang.code(), ..context };
    match environment()
        .get_template(name)
        .and_then(|t| t.render(context))
    {
        Ok(html) => html,
        Err(e) => format!(
            "<!doctype html><title>error</title><p>page {} could not be rendered: {}</p>",
            crate::chart::escape(name),
            crate::chart::escape(&e.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_the_templates_use_is_in_the_catalog() {
        let call = regex::Regex::new(r#"t\("([a-z0-9_.]+)"\)"#).unwrap();
        let mut used = 0;
        for (name, source) in TEMPLATES {
            for key in call.captures_iter(source) {
                used += 1;
                assert_ne!(Lang::En.t(&key[1]), "??", "{name}: key {} missing", &key[1]);
            }
        }
        assert!(used > 50, "only {used} keys found: the pattern is wrong");
    }

    #[test]
    fn pages_render_in_both_languages_and_escape_values() {
        for (lang, word) in [(Lang::En, "Log in"), (Lang::Ja, "ログイン")] {
            let html = render(
                "login.html",
                lang,
                minijinja::context! { csrf => "x", next => "<script>", failed => true },
            );
            assert!(html.contains(word), "{html}");
            assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
            assert!(html.contains(&format!("lang=\"{}\"", lang.code())));
        }
    }
}
