//! Plan → nftables text: the whole table (for `apply`) or only set contents (for `sync`).

use std::fmt::Write;

use crate::plan::{Element, Plan};
use crate::time::{format_utc, nft_duration};

/// Prefix of the kernel log lines for blocked attempts.
pub const LOG_PREFIX: &str = "spamgate-op25b ";

/// The sets `sync` rewrites: (name, nft type, has timeouts, elements).
fn element_sets(plan: &Plan) -> [(&'static str, &'static str, bool, &[Element]); 6] {
    [
        ("pool4", "ipv4_addr", false, &plan.pool4),
        ("pool6", "ipv6_addr", false, &plan.pool6),
        ("exempt4", "ipv4_addr", true, &plan.exempt4),
        ("exempt6", "ipv6_addr", true, &plan.exempt6),
        ("relay4", "ipv4_addr", false, &plan.relay4),
        ("relay6", "ipv6_addr", false, &plan.relay6),
    ]
}

/// The complete ruleset. The leading `table` + `delete table` pair makes one `nft -f`
/// transaction that creates the table if absent and replaces it whole if present (nft
/// 1.0.6 has no `destroy`); a failure anywhere leaves the old table in force.
pub(crate) fn ruleset(plan: &Plan) -> String {
    let table = &plan.table;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# spamgate OP25B ruleset, rendered {now}; load with `nft -f` (one atomic transaction).\n\
         # New TCP connections from the customer pools to port(s) {ports} are reset, except\n\
         # from exempt sources and to the ISP's relays. Ports 587 and 465 are never matched.\n\
         table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{",
        now = format_utc(plan.now_ms),
        ports = join(plan.ports.iter().map(u16::to_string), ", "),
    );
    for (name, kind, timeouts, elements) in element_sets(plan) {
        let _ = writeln!(out, "\tset {name} {{\n\t\ttype {kind}");
        let flags = if timeouts {
            "interval,timeout"
        } else {
            "interval"
        };
        let _ = writeln!(out, "\t\tflags {flags}");
        if !elements.is_empty() {
            out.push_str("\t\telements = {\n");
            for element in elements {
                let _ = writeln!(out, "\t\t\t{}", element_text(element));
            }
            out.push_str("\t\t}\n");
        }
        out.push_str("\t}\n\n");
    }
    for (name, kind) in [("blocked4", "ipv4_addr"), ("blocked6", "ipv6_addr")] {
        let _ = writeln!(
            out,
            "\t# Sources refused, with per-source packet counts (`op25b hits`).\n\
             \tset {name} {{\n\
             \t\ttype {kind}\n\
             \t\tsize {size}\n\
             \t\tflags dynamic,timeout\n\
             \t\tcounter\n\
             \t\ttimeout {timeout}\n\
             \t}}\n",
            size = plan.hits_size,
            timeout = nft_duration(plan.hits_timeout_secs),
        );
    }
    let interfaces = match plan.interfaces.as_slice() {
        [] => String::new(),
        [one] => format!("iifname \"{one}\" "),
        many => format!(
            "iifname {{ {} }} ",
            join(many.iter().map(|n| format!("\"{n}\"")), ", ")
        ),
    };
    let ports = match plan.ports.as_slice() {
        [one] => one.to_string(),
        many => format!("{{ {} }}", join(many.iter().map(u16::to_string), ", ")),
    };
    let _ = write!(
        out,
        "\tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\t{interfaces}tcp dport {ports} ct state new jump op25b\n\
         \t}}\n\
         \n\
         \tchain op25b {{\n\
         \t\tip saddr @exempt4 return\n\
         \t\tip6 saddr @exempt6 return\n\
         \t\tip daddr @relay4 return\n\
         \t\tip6 daddr @relay6 return\n\
         \t\tip saddr @pool4 goto op25b_reject\n\
         \t\tip6 saddr @pool6 goto op25b_reject\n\
         \t}}\n\
         \n\
         \t# One statement per rule: a full hit table or the log limit must never skip the reset.\n\
         \tchain op25b_reject {{\n\
         \t\tupdate @blocked4 {{ ip saddr }}\n\
         \t\tupdate @blocked6 {{ ip6 saddr }}\n\
         \t\tcounter\n\
         \t\tlimit rate {rate} log prefix \"{LOG_PREFIX}\"\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t}}\n\
         }}\n",
        rate = plan.log_rate,
    );
    out
}

/// Set contents only, as one transaction: each set is flushed and refilled, so entries
/// removed from the configuration disappear and the chains (and hit counts) stay.
pub(crate) fn set_update(plan: &Plan) -> String {
    let table = &plan.table;
    let mut out = format!(
        "# spamgate OP25B set update, rendered {}; the chains are left as they are.\n",
        format_utc(plan.now_ms)
    );
    for (name, _, _, elements) in element_sets(plan) {
        let _ = writeln!(out, "flush set inet {table} {name}");
        if !elements.is_empty() {
            let _ = writeln!(out, "add element inet {table} {name} {{");
            for element in elements {
                let _ = writeln!(out, "\t{}", element_text(element));
            }
            out.push_str("}\n");
        }
    }
    out
}

fn element_text(element: &Element) -> String {
    let mut text = element.prefix.to_string();
    if let Some(secs) = element.timeout_secs {
        let _ = write!(text, " timeout {}", nft_duration(secs));
    }
    if let Some(comment) = &element.comment {
        let _ = write!(text, " comment \"{comment}\"");
    }
    if let Some(until) = &element.until {
        // After the comma nft reads `#` to the end of the line as a comment.
        return format!("{text}, # until {until}");
    }
    text.push(',');
    text
}

fn join(items: impl Iterator<Item = String>, sep: &str) -> String {
    items.collect::<Vec<_>>().join(sep)
}
