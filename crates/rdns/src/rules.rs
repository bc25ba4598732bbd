//! The built-in rule table.
//!
//! Rules are plain regular expressions matched against the normalised name (lowercase, no
//! trailing dot). They run as one `RegexSet`, so the table order is the reporting order.

/// One built-in rule: a stable id (used in logs, `disable_rules` and the docs) and its pattern.
pub(crate) struct BuiltinRule {
    pub id: &'static str,
    pub pattern: &'static str,
}

// Keyword groups for spamgate's own rules. Ideas from the public keyword sets of Rspamd's
// hfilter module and SpamAssassin's 20_dynrdns.cf; the lists and patterns are spamgate's own.
// Macros rather than consts because `concat!` only takes literals.

/// Words naming an access technology or an address pool: next to digits, an end-user line.
macro_rules! line_words {
    () => {
        "dhcp|dyn|dynip|dynamic|dial|dialin|dialup|ppp|pppoa|pppoe|pool|cable|catv|docsis|dsl|adsl|hdsl|sdsl|vdsl|xdsl|broadband|fttb|fttc|ftth|fttp|fttx|cpe|cgnat"
    };
}

/// Words naming a subscriber: weaker evidence than [`line_words`], so a rule of its own that an
/// operator can turn off alone.
macro_rules! subscriber_words {
    () => {
        "customer|cust|subscriber|client|user|home|res|resident|residential|static"
    };
}

/// Words that, as a whole label, name a sub-zone of end-user lines (`*.dyn.example.net`).
/// `client`, `user` and `home` are left out: as zone names they are too often something else.
macro_rules! zone_words {
    () => {
        "dhcp|dyn|dynip|dynamic|dial|dialin|dialup|ppp|pppoa|pppoe|pool|cable|catv|docsis|dsl|adsl|hdsl|sdsl|vdsl|xdsl|broadband|fttb|fttc|ftth|fttp|fttx|cpe|cgnat|customer|cust|subscriber|res|resident|residential|static"
    };
}

/// A keyword as a token (no letter right before or after it) with a digit in the same label,
/// in either order: `dyn-5`, `cable5`, `5-dyn`, `x5dsl`.
macro_rules! keyword_with_digit {
    ($words:expr) => {
        concat!(
            "(?:^|[^a-z])(?:",
            $words,
            ")(?:[0-9]|[^a-z.][^.]*[0-9])|[0-9](?:[^.]*[^a-z.])?(?:",
            $words,
            ")(?:[^a-z]|$)"
        )
    };
}

const fn rule(id: &'static str, pattern: &'static str) -> BuiltinRule {
    BuiltinRule { id, pattern }
}

/// The built-in rules, in reporting order.
pub(crate) const BUILTIN_RULES: &[BuiltinRule] = &[
    // S25R, ASAMI Hideo (2004), "Selective SMTP Rejection" — the published rules 1-6,
    // kept exactly as published (Postfix regexp syntax is also valid here). Rule 0,
    // `^unknown$`, is not a name rule: a missing name is the caller's fact.
    rule("s25r-1", r"^[^.]*[0-9][^0-9.]+[0-9].*\."),
    rule("s25r-2", r"^[^.]*[0-9]{5}"),
    rule("s25r-3", r"^([^.]+\.)?[0-9][^.]*\.[^.]+\..+\.[a-z]"),
    rule("s25r-4", r"^[^.]*[0-9]\.[^.]*[0-9]-[0-9]"),
    rule("s25r-5", r"^[^.]*[0-9]\.[^.]*[0-9]\.[^.]+\..+\."),
    rule("s25r-6", r"^(dhcp|dialup|ppp|[achrsvx]?dsl)[^.]*[0-9]"),
    // spamgate's own rules: they only add names S25R lets through.
    //
    // An IPv4 address anywhere in the name: four groups of 1-3 digits joined by `-`, `.` or
    // `_`, or twelve digits in a row (zero-padded, `203000113005`).
    rule(
        "ip4-in-name",
        r"(?:^|[^0-9])[0-9]{1,3}[-._][0-9]{1,3}[-._][0-9]{1,3}[-._][0-9]{1,3}(?:[^0-9]|$)|(?:^|[^0-9])[0-9]{12}(?:[^0-9]|$)",
    ),
    // An IPv6 address from 2000::/3 written with dashes (`2001-db8-1--5`, five or more groups
    // or a `--`), or a whole label of 32 nibbles.
    rule(
        "ip6-in-name",
        r"(?:^|[.-])[23][0-9a-f]{3}(?:(?:-[0-9a-f]{1,4}){4,7}|(?:-[0-9a-f]{1,4}){0,6}--(?:[0-9a-f]{1,4}(?:-[0-9a-f]{1,4}){0,6})?)(?:[.-]|$)|(?:^|\.)[0-9a-f]{32}(?:\.|$)",
    ),
    rule("dyn-keyword", keyword_with_digit!(line_words!())),
    rule(
        "subscriber-keyword",
        keyword_with_digit!(subscriber_words!()),
    ),
    // A first label with a digit inside a sub-zone named for end-user lines, with at least two
    // labels after that zone label (so a registered domain such as `home.example` alone does
    // not count): `cbab71fe.dyn.example.net`, `x1.pool.example.net`.
    rule(
        "dyn-zone",
        concat!(
            r"^[^.]*[0-9][^.]*\.(?:[^.]+\.)*(?:[a-z]+-)*(?:",
            zone_words!(),
            r")(?:-[a-z]+)*\.[^.]+\.[^.]+$"
        ),
    ),
];
