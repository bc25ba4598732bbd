//! English and Japanese. The language is the user's choice (the `lang` cookie the
//! switcher sets), else the first of the browser's `Accept-Language` that we speak,
//! else English. Every text of the pages is a key here; templates call `t("key")`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    pub fn parse(text: &str) -> Option<Lang> {
        let primary = text.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The cookie's choice, else the best of `Accept-Language` (by q, then order).
    pub fn choose(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = cookie.and_then(Lang::parse) {
            return lang;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',').take(32) {
            let mut pieces = part.split(';');
            let Some(lang) = pieces.next().and_then(Lang::parse) else {
                continue;
            };
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The text for `key`; the key itself when it is missing (a test keeps them all).
    pub fn t(self, key: &str) -> &'static str {
        match CATALOG.binary_search_by(|(k, _, _)| (*k).cmp(key)) {
            Ok(i) => match self {
                Lang::En => CATALOG[i].1,
                Lang::Ja => CATALOG[i].2,
            },
            Err(_) => "??",
        }
    }
}

/// (key, English, Japanese), sorted by key (a test checks).
pub const CATALOG: &[(&str, &str, &str)] = &[
    ("action", "Action", "アクション"),
    ("actor", "By", "実施者"),
    ("add", "Add", "追加"),
    ("allow.comment", "Comment", "コメント"),
    (
        "allow.expires",
        "Expires (e.g. 7d; empty: never)",
        "有効期限 (例: 7d、空欄は無期限)",
    ),
    ("allow.kind", "Kind", "種類"),
    (
        "allow.title",
        "Allow-list (effective at once)",
        "許可リスト (即時反映)",
    ),
    ("allow.value", "Value", "値"),
    ("approvals.pending", "Waiting for approval", "承認待ち"),
    ("approve", "Approve", "承認"),
    ("attribution", "Attribution", "帰属 (誰が使っていたか)"),
    ("case", "Case", "ケース"),
    ("case.category", "Category", "カテゴリ"),
    ("case.customer", "Customer", "顧客"),
    ("case.opened", "Opened", "開始"),
    ("case.reports", "Reports", "報告"),
    ("case.state", "State", "状態"),
    (
        "cases.by_state",
        "Open abuse cases by state",
        "状態別の未完了ケース",
    ),
    (
        "check.explain",
        "Why was this client greylisted?",
        "このクライアントがグレイリストされた理由",
    ),
    ("check.helo", "HELO name", "HELO 名"),
    ("check.recipient", "Recipient", "受信者"),
    ("check.result", "Result", "結果"),
    ("check.sender", "Sender", "送信者"),
    (
        "check.submit",
        "Check (dry run: nothing recorded)",
        "確認 (ドライラン: 記録しません)",
    ),
    ("check.title", "Check a client", "クライアントの確認"),
    ("claim", "Claim", "担当する"),
    ("claims", "Claims", "担当"),
    ("classify.class", "Class", "分類"),
    ("classify.decided", "Decided by", "判定の根拠"),
    (
        "classify.explain",
        "How do the reverse-DNS rules see this name?",
        "逆引き名の規則はこの名前をどう判定するか",
    ),
    ("classify.matched", "Rules that matched", "一致した規則"),
    ("classify.name", "Host name", "ホスト名"),
    (
        "classify.names",
        "Host names, one per line",
        "ホスト名 (1 行に 1 つ)",
    ),
    ("classify.submit", "Classify", "判定する"),
    ("classify.title", "Classify a host name", "ホスト名の判定"),
    ("client", "Client address", "クライアントアドレス"),
    ("confirm", "Confirm the case", "ケースを確認"),
    ("count", "Count", "件数"),
    (
        "csrf",
        "The form expired; reload the page and try again.",
        "フォームの有効期限が切れました。再読み込みしてやり直してください。",
    ),
    (
        "dash.actions",
        "Decisions over time by action",
        "アクション別の判定数の推移",
    ),
    (
        "dash.awl",
        "Auto-whitelisted clients",
        "自動ホワイトリスト済みクライアント",
    ),
    (
        "dash.delays",
        "Retry delay of passed triplets",
        "通過したトリプレットの再送までの時間",
    ),
    (
        "dash.dns",
        "DNS lists: lookups, errors, mean latency",
        "DNS リスト: 問い合わせ数・エラー・平均遅延",
    ),
    (
        "dash.greylist",
        "Greylist effectiveness",
        "グレイリストの効果",
    ),
    (
        "dash.limits",
        "Submission limit trips (24 h)",
        "送信制限の超過 (24 時間)",
    ),
    (
        "dash.never",
        "Pending, not retried within the delay",
        "保留中 (遅延時間内に再送なし)",
    ),
    (
        "dash.no_decisions",
        "No decisions recorded since the daemon started.",
        "デーモン起動後の判定はまだありません。",
    ),
    (
        "dash.op25b",
        "OP25B blocked attempts",
        "OP25B でブロックした接続",
    ),
    (
        "dash.op25b_not_configured",
        "OP25B is not configured here: [op25b] names no pools, so spamgate does not manage port 25 blocking on this host.",
        "OP25B はここでは設定されていません: [op25b] に pools がないため、このホストでは spamgate は 25 番ポートのブロックを管理していません。",
    ),
    (
        "dash.op25b_read",
        "Read from the kernel's counters at",
        "カーネルのカウンタを読んだ時刻",
    ),
    (
        "dash.op25b_series",
        "New blocked attempts per minute (sampled)",
        "1 分ごとの新たなブロック件数 (サンプリング)",
    ),
    (
        "dash.op25b_top",
        "Sources with the most blocked attempts",
        "ブロック件数の多い送信元",
    ),
    (
        "dash.op25b_total",
        "Blocked attempts in the hit tables",
        "ヒットテーブル内のブロック件数",
    ),
    (
        "dash.op25b_unavailable",
        "The kernel's OP25B counters cannot be read (the daemon needs the nft command and CAP_NET_ADMIN)",
        "カーネルの OP25B カウンタを読めません (デーモンには nft コマンドと CAP_NET_ADMIN が必要です)",
    ),
    (
        "dash.passed",
        "Passed (retried after the delay)",
        "通過 (遅延後に再送)",
    ),
    ("dash.pending", "Pending", "保留中"),
    (
        "dash.reasons",
        "Decisions over time by reason",
        "理由別の判定数の推移",
    ),
    (
        "dash.since",
        "Last hour, per minute, since the daemon started. Total:",
        "直近 1 時間、1 分ごと、デーモン起動以降。合計:",
    ),
    ("dash.title", "Dashboard", "ダッシュボード"),
    (
        "dash.top",
        "Top suspicious networks (pending triplets)",
        "疑わしいネットワーク上位 (保留中のトリプレット)",
    ),
    ("delete", "Delete", "削除"),
    (
        "desk.queue",
        "Triage queue (reports nobody could attribute)",
        "トリアージ待ち (帰属できなかった報告)",
    ),
    ("desk.title", "Abuse desk", "不正利用窓口"),
    ("detail", "Detail", "詳細"),
    ("dismiss", "Dismiss (not abuse)", "却下 (不正利用ではない)"),
    ("error", "Error", "エラー"),
    ("evidence", "Raw evidence", "原文の証拠"),
    (
        "export",
        "Export the case (evidence bundle)",
        "ケースのエクスポート (証拠一式)",
    ),
    ("filters.title", "Filters", "フィルタ"),
    (
        "greylist.network",
        "Network (e.g. 192.0.2.0/24)",
        "ネットワーク (例: 192.0.2.0/24)",
    ),
    ("greylist.search", "Search", "検索"),
    (
        "greylist.title",
        "Greylist entries",
        "グレイリストのエントリ",
    ),
    ("history", "Ladder history", "措置の履歴"),
    ("ladder", "Ladder", "措置"),
    ("lang.switch", "日本語", "English"),
    ("login", "Log in", "ログイン"),
    (
        "login.failed",
        "Wrong user name or password.",
        "ユーザー名またはパスワードが違います。",
    ),
    ("logout", "Log out", "ログアウト"),
    ("na", "not available", "取得できません"),
    ("none", "None.", "ありません。"),
    ("note", "Note", "メモ"),
    ("notice.preview", "Notification preview", "通知のプレビュー"),
    ("password", "Password", "パスワード"),
    ("reason", "Reason", "理由"),
    (
        "refused",
        "Your role may not do this.",
        "この操作の権限がありません。",
    ),
    ("remove", "Remove", "削除"),
    ("resume", "Resume", "再開"),
    ("role", "Role", "権限"),
    ("saved", "Done.", "完了しました。"),
    ("suspend", "Suspend", "利用停止"),
    ("terminate", "Terminate", "解約"),
    ("time", "Time", "日時"),
    ("user", "User name", "ユーザー名"),
    ("warn", "Warn", "警告"),
    ("zone", "Zone", "ゾーン"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cookie: Option<&str>, accept: Option<&str>, expected: Lang) {
        assert_eq!(
            Lang::choose(cookie, accept),
            expected,
            "{cookie:?} {accept:?}"
        );
    }

    #[test]
    fn the_choice_beats_the_browser_which_beats_english() {
        for (cookie, accept, expected) in [
            (None, None, Lang::En),
            (None, Some("ja"), Lang::Ja),
            (None, Some("ja-JP,ja;q=0.9,en;q=0.8"), Lang::Ja),
            (None, Some("fr-FR, en;q=0.5, ja;q=0.7"), Lang::Ja),
            (None, Some("de, fr"), Lang::En),
            (None, Some("ja;q=0, en"), Lang::En),
            (Some("en"), Some("ja"), Lang::En),
            (Some("ja"), None, Lang::Ja),
            (Some("xx"), Some("ja"), Lang::Ja),
        ] {
            check(cookie, accept, expected);
        }
    }

    #[test]
    fn the_catalog_is_sorted_unique_and_complete() {
        for pair in CATALOG.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (key, en, ja) in CATALOG {
            assert!(!en.is_empty() && !ja.is_empty(), "{key}");
        }
        assert_eq!(Lang::Ja.t("logout"), "ログアウト");
        assert_eq!(Lang::En.t("no.such.key"), "??");
    }
}
