//! The built-in rule table.
//!
//! Rules are plain regular expressions matched against the normalised name (lowercase, no
//! trailing dot). Generic rules run as one `RegexSet`, so the table order is the reporting
//! order; the mail-server rules run as a second set, only on names a generic rule matched.

/// What a rule's match says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// End-user evidence that a mail-server rule cannot outweigh: an address or an
    /// access-technology keyword in the name.
    Strong,
    /// End-user evidence from the shape alone (the S25R rules): a mail-server rule outweighs it.
    Shape,
    /// Mail-server evidence: a name it matches is proper unless a strong rule also matches.
    Server,
}

/// One built-in rule: a stable id (used in logs, `disable_rules` and the docs), its kind and
/// its pattern.
pub(crate) struct BuiltinRule {
    pub id: &'static str,
    pub kind: RuleKind,
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
/// Kept in step with `ZONE_LABEL` in `lib.rs`, which checks the label's place against the
/// public suffix.
macro_rules! zone_words {
    () => {
        "dhcp|dyn|dynip|dynamic|dial|dialin|dialup|ppp|pppoa|pppoe|pool|cable|catv|docsis|dsl|adsl|hdsl|sdsl|vdsl|xdsl|broadband|fttb|fttc|ftth|fttp|fttx|cpe|cgnat|customer|cust|subscriber|res|resident|residential|static|wireless|dip|dip0|dialip"
    };
}

/// The zone words that are about the line itself (not the subscriber): under one of them even
/// a first label without digits is an end-user line (`abcdef.dip.example.net`).
macro_rules! bare_zone_words {
    () => {
        "dhcp|dyn|dynip|dynamic|dial|dialin|dialup|ppp|pppoa|pppoe|pool|cable|catv|docsis|dsl|adsl|xdsl|vdsl|broadband|ftth|cpe|cgnat|wireless|dip|dip0|dialip"
    };
}

/// Words that name a mail service: the host sends or relays mail for a living.
macro_rules! mail_words {
    () => {
        "smtp|smtps|smtpout|smtp-out|mail|mailout|mail-out|mailer|mailers|mailgw|mailhost|mailrelay|mailsrv|mailserver|email|mx|mxout|mx-out|mta|mtas|msa|out|outbound|outgoing|relay|relays|gateway|gw|smtpgw|esa|egress|bounce|bounces|sender|senders|postfix|exim|sendmail|smarthost|antispam|spamfilter|mailfilter|filter|mailsec|ironport|bulk|newsletter|notify|notification|notifications|list|lists|listserv"
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

const fn rule(id: &'static str, kind: RuleKind, pattern: &'static str) -> BuiltinRule {
    BuiltinRule { id, kind, pattern }
}

use RuleKind::{Server, Shape, Strong};

/// A whole label naming a zone of end-user lines (for the public-suffix check of `dyn-zone`).
pub(crate) const ZONE_LABEL: &str = concat!("^(?:[a-z]+-)*(?:", zone_words!(), ")(?:-[a-z]+)*$");
/// The same for `dyn-zone-bare`.
pub(crate) const BARE_ZONE_LABEL: &str =
    concat!("^(?:[a-z]+-)*(?:", bare_zone_words!(), ")(?:-[a-z]+)*$");

/// The id of the rule whose match is checked against the public suffix before it counts.
pub(crate) const DYN_ZONE_RULE: &str = "dyn-zone";
/// Same check, for the digit-less variant.
pub(crate) const DYN_ZONE_BARE_RULE: &str = "dyn-zone-bare";
/// The mail-server rule whose match needs the first label right under the registrable domain.
pub(crate) const SHORT_HOST_RULE: &str = "short-host";

/// The built-in rules, in reporting order (generic rules first, then mail-server rules).
pub(crate) const BUILTIN_RULES: &[BuiltinRule] = &[
    // S25R, ASAMI Hideo (2004), "Selective SMTP Rejection" — the published rules 1-6,
    // kept exactly as published (Postfix regexp syntax is also valid here). Rule 0,
    // `^unknown$`, is not a name rule: a missing name is the caller's fact.
    rule("s25r-1", Shape, r"^[^.]*[0-9][^0-9.]+[0-9].*\."),
    rule("s25r-2", Shape, r"^[^.]*[0-9]{5}"),
    rule("s25r-3", Shape, r"^([^.]+\.)?[0-9][^.]*\.[^.]+\..+\.[a-z]"),
    rule("s25r-4", Shape, r"^[^.]*[0-9]\.[^.]*[0-9]-[0-9]"),
    rule("s25r-5", Shape, r"^[^.]*[0-9]\.[^.]*[0-9]\.[^.]+\..+\."),
    rule(
        "s25r-6",
        Shape,
        r"^(dhcp|dialup|ppp|[achrsvx]?dsl)[^.]*[0-9]",
    ),
    // spamgate's own rules: they only add names S25R lets through.
    //
    // An IPv4 address anywhere in the name: four groups of 1-3 digits joined by `-`, `.` or
    // `_`, or twelve digits in a row (zero-padded, `203000113005`).
    rule(
        "ip4-in-name",
        Strong,
        r"(?:^|[^0-9])[0-9]{1,3}[-._][0-9]{1,3}[-._][0-9]{1,3}[-._][0-9]{1,3}(?:[^0-9]|$)|(?:^|[^0-9])[0-9]{12}(?:[^0-9]|$)",
    ),
    // An IPv6 address from 2000::/3 written with dashes (`2001-db8-1--5`, five or more groups
    // or a `--`), or a whole label of 32 nibbles.
    rule(
        "ip6-in-name",
        Strong,
        r"(?:^|[.-])[23][0-9a-f]{3}(?:(?:-[0-9a-f]{1,4}){4,7}|(?:-[0-9a-f]{1,4}){0,6}--(?:[0-9a-f]{1,4}(?:-[0-9a-f]{1,4}){0,6})?)(?:[.-]|$)|(?:^|\.)[0-9a-f]{32}(?:\.|$)",
    ),
    rule("dyn-keyword", Strong, keyword_with_digit!(line_words!())),
    rule(
        "subscriber-keyword",
        Strong,
        keyword_with_digit!(subscriber_words!()),
    ),
    // A first label with a digit, then a label named for end-user lines with at least two
    // labels after it: `cbab71fe.dyn.example.net`, `x1.pool.example.co.uk`. The zone label
    // must also lie left of the registrable domain (public suffix list), which the classifier
    // checks after the match, so `x1.pool.co.uk`-like registered names do not count.
    rule(
        DYN_ZONE_RULE,
        Strong,
        concat!(
            r"^[^.]*[0-9][^.]*\.(?:[^.]+\.)*(?:[a-z]+-)*(?:",
            zone_words!(),
            r")(?:-[a-z]+)*\.[^.]+\.[^.]"
        ),
    ),
    // An IPv4 address as 8 hex digits making up the first label, after at most a short
    // letter prefix: `pd9e4f89f.dip.t-dialin.example`, `0xd5aaf40b.dhcp.example`,
    // `catv-506237d8.example.hu`, `ool-18be1aaf.dyn.example.net`.
    rule(
        "hex-ip",
        Strong,
        concat!(
            // Eight hex digits, at least one of them a decimal digit (so a word such as
            // `cafebabe` is not an address).
            r"^(?:0x|[a-z]{1,5}-?)?(?:[0-9][0-9a-f]{7}|[a-f]{1}[0-9][0-9a-f]{6}|[a-f]{2}[0-9][0-9a-f]{5}|[a-f]{3}[0-9][0-9a-f]{4}|[a-f]{4}[0-9][0-9a-f]{3}|[a-f]{5}[0-9][0-9a-f]{2}|[a-f]{6}[0-9][0-9a-f]{1}|[a-f]{7}[0-9][0-9a-f]{0}",
            r")(?:\.|-[a-z]*\.)"
        ),
    ),
    // Carrier-grade NAT and NAT pools: `nat-42.example.net`, `natpool3.example`,
    // `a.b.nat.umts.example.pl`.
    rule(
        "nat-pool",
        Strong,
        r"(?:^|[^a-z])(?:nat|natpool|nat-pool|cgn|cgnat)(?:[0-9]|[-_.][^.]*[0-9]|[-_.](?:[^.]+\.)+[^.]+\.[^.]+$)|[0-9][^.]*[-.](?:nat|natpool|cgn)(?:[^a-z]|$)",
    ),
    // Reverse templates for space nobody named: `unassigned.example.net`,
    // `unallocated-203-0-113.example`, `no-reverse.example`. Needs a dot, so the bare word
    // `unknown` (Postfix's "no verified name") is not matched here.
    rule(
        "unassigned",
        Strong,
        r"(?:^|[.-])(?:unassigned|unallocated|unused|unknown|not-?assigned|no-?reverse|no-?rdns|no-?ptr|noptr|reverse-not-set|not-?set|undefined|generic)[.-]",
    ),
    // A first label without digits right under a label named for the line itself:
    // `abcdef.dip.example.net`. Weaker than `dyn-zone` (a bare word as first label is also
    // how ISPs name their own servers), so a mail-service word outweighs it.
    rule(
        DYN_ZONE_BARE_RULE,
        Shape,
        concat!(
            r"^[a-z_-]+\.(?:[a-z]+-)*(?:",
            bare_zone_words!(),
            r")(?:-[a-z]+)*\.[^.]+\.[^.]"
        ),
    ),
    // Mail-server rules: they never make a name generic, they outweigh a shape rule.
    //
    // A mail-service word as a token (`smtp`, `mail`, `mx`, `mta`, `out`, `relay`,
    // `gateway`, ...; digits and one letter may follow: `mx0a`, `mta214a`) in a label that has
    // at least two labels after it, so a TLD (`.com.mx`) or a bare registered domain does not
    // count: `mx1-2.example.com`, `a8-30.smtp-out.amazonses.com`, `web53514.mail.yahoo.com`.
    //
    // The unambiguous words also count inside a label between digits, as sites number
    // their relays by building or cluster: `d01relay02.pok.example.com`. Digits on both
    // sides, so a word that merely contains the letters (`smartmail`, `boxmx`) is not one.
    rule(
        "mail-service",
        Server,
        concat!(
            r"(?:(?:^|[.-])(?:",
            mail_words!(),
            r")(?:[0-9]+[a-z]?)?(?:[-_][^.]*)?|[0-9](?:smtp|mail|relay|mta|mx)[0-9][^.]*)\.[^.]+\.[^.]"
        ),
    ),
    // Hosted senders whose registered domain carries the mail word while the host label is
    // an opaque pool id: `so254-9.mailgun.example`, `mta-81-59.sparkpostmail.example`.
    rule(
        "mail-domain",
        Server,
        r"\.[a-z0-9-]*(?:mail|smtp)[a-z0-9-]*\.[a-z]{2,}(?:\.[a-z]{2})?$",
    ),
    // A first label with at most five digits right under the registrable domain (checked
    // against the public suffix list after the match): `m15-78.126.example`,
    // `bm1-13.ed10.example`, `d1-sfbay-01.example.com`. Hand-numbered server pools look like
    // this; an end-user line's name encodes more of its address or sits in a sub-zone
    // (`h234n2fls32o895.telia.example` has eleven digits, `x1.pool.example.net` a zone).
    //
    // The label must start with a letter: server pools are named `m15`, `bm1`, `d1`; a
    // first label that starts with digits (`102-be2-4.example.pl`) is an address or line
    // number. The registrable domain is the one under the ICANN section of the list: a
    // hosting provider's private suffix (`dd36226.kasserver.example`) is the provider's
    // own zone of server names, not a registration by a customer.
    rule(
        SHORT_HOST_RULE,
        Server,
        r"^[a-z][^0-9.]*(?:[0-9][^0-9.]*){1,5}\.[^.]+\.[^.]",
    ),
];
