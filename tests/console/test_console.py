"""The operator console in a real browser (Debian's chromium over chromedriver), against
a real `spamgate serve` started by scripts/e2e-console.sh: policy requests go to the
daemon's policy socket, reports in through `spamgate abuse ingest`, and every check
looks at what the daemon answers afterwards, not at the page alone.

Environment (set by the script): SG (the binary), SG_CONFIG, ADMIN (http://127.0.0.1:PORT),
POLICY (127.0.0.1:PORT), DRIVER_PORT, REPORT (an ARF report file), SHOTS (where the
screenshots go; empty: none), PASSWORD (of every test user).

Run: python3 -m unittest -v tests/console/test_console.py   (the script does)
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import webdriver  # noqa: E402

SG = os.environ.get("SG", "spamgate")
CONFIG = os.environ.get("SG_CONFIG", "")
ADMIN = os.environ.get("ADMIN", "http://127.0.0.1:8025")
POLICY = os.environ.get("POLICY", "127.0.0.1:10040")
SHOTS = os.environ.get("SHOTS", "")
PASSWORD = os.environ.get("PASSWORD", "")
ACCOUNT = "alice-smtp@isp.example.jp"

driver = None


def setUpModule():
    global driver
    driver = webdriver.Driver(int(os.environ.get("DRIVER_PORT", "9515")),
                              log=os.environ.get("DRIVER_LOG"))


def tearDownModule():
    if driver:
        driver.stop()


def policy(client, sender="bulk@example.net", recipient="user@isp.example.jp",
           sasl=None, helo="mail.example.net"):
    """One request over the daemon's policy socket; returns the action line's value."""
    host, port = POLICY.rsplit(":", 1)
    lines = [
        "request=smtpd_access_policy",
        "protocol_state=RCPT",
        "protocol_name=ESMTP",
        f"client_address={client}",
        "client_name=unknown",
        "reverse_client_name=unknown",
        f"helo_name={helo}",
        f"sender={sender}",
        f"recipient={recipient}",
    ]
    if sasl:
        lines += [f"sasl_username={sasl}", "sasl_method=PLAIN", "recipient_count=0"]
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(("\n".join(lines) + "\n\n").encode())
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    text = data.decode().strip()
    assert text.startswith("action="), text
    return text[len("action="):]


def sg(*args, stdin=None):
    out = subprocess.run([SG, *args, "-c", CONFIG], input=stdin, capture_output=True,
                         timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"spamgate {' '.join(args)}: {out.returncode} {out.stderr.decode()}")
    return out.stdout.decode()


def allow_entries():
    """The runtime allow-list as `spamgate allow list --json` prints it (JSON lines)."""
    return [(e["kind"], e["value"]) for e in map(json.loads, sg("allow", "list", "--json").splitlines())]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def raw_request(path, data=None, headers=None):
    """(status, headers, body) of one request without a browser and without a session."""
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(ADMIN + path, data=data, headers=headers or {})
    try:
        with opener.open(req, timeout=15) as r:
            return r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


def shot(session, name):
    dump = os.environ.get("DUMP")
    if dump:
        with open(os.path.join(dump, f"{name}.html"), "w") as f:
            f.write(session.source)
    if SHOTS:
        session.screenshot(os.path.join(SHOTS, f"{name}.png"))


def login(session, user):
    session.get(ADMIN + "/login")
    session.wait_for("#username").send_keys(user)
    session.find("#password").send_keys(PASSWORD)
    session.find("#login-submit").click()
    session.wait_for("#who")
    assert user in session.find("#who").text


def logout(session):
    session.find("#logout").click()
    session.wait_for("#login-form")


def bar_values(session, chart, series):
    rects = session.find_all(f'#{chart} rect[data-series="{series}"]')
    return sum(int(r.attribute("data-value")) for r in rects)


class Console(unittest.TestCase):
    # Test methods run in name order: the cases build on each other's state (the
    # decisions made, the allow-list entry, the case), as an operator's day would.

    def test_00_no_session_is_refused(self):
        status, headers, _ = raw_request("/console/")
        self.assertEqual(status, 303, "a browser without a session is sent to the login page")
        self.assertTrue(headers["Location"].startswith("/login"), headers["Location"])
        for path in ["/console/filters", "/console/desk", "/console/desk/cases/1"]:
            status, headers, _ = raw_request(path)
            self.assertEqual(status, 303, path)
        before = allow_entries()
        status, _, body = raw_request(
            "/console/filters/allow/add",
            data=b"kind=client-address&value=203.0.113.9",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 401, body[:200])
        self.assertEqual(allow_entries(), before, "nothing changed")
        status, _, _ = raw_request("/api/v1/session")
        self.assertEqual(status, 401)

    def test_10_dashboard_charts_the_decisions_made(self):
        # Four new triplets from two clients: each first attempt is greylisted (the
        # reverse lookup fails here: dns-tempfail is a suspicious class).
        answers = [policy("192.0.2.10", sender=f"s{i}@example.net") for i in range(3)]
        answers.append(policy("198.51.100.7"))
        for a in answers:
            self.assertTrue(a.startswith("DEFER"), a)
        with driver.session() as s:
            s.get(ADMIN + "/console/")
            s.wait_for("#login-form")
            shot(s, "login")
            login(s, "olivia")
            s.get(ADMIN + "/console/")
            s.wait_for("#chart-actions")
            total = int(s.find("#decisions-total").text)
            self.assertGreaterEqual(total, 4)
            # The action id of a greylist deferral, as spamgate_decisions_total labels it.
            defers = sum(bar_values(s, "chart-actions", a) for a in ("defer", "greylist"))
            shot(s, "dashboard")
            self.assertGreaterEqual(defers, 4)
            self.assertGreaterEqual(int(s.find("#gl-pending").text), 4)
            self.assertIn("192.0.2.0/24", s.find("#top-networks").text)
            shot(s, "dashboard")
            # Japanese, and back.
            self.assertIn("ダッシュボード", s.click_and_load(s.find("#lang-switch"), "h1").text)
            self.assertIn("Dashboard", s.click_and_load(s.find("#lang-switch"), "h1").text)

    def test_12_op25b_panel_says_it_is_not_configured(self):
        # This daemon's configuration has no [op25b] pools: the panel says so plainly
        # (scripts/op25b-netns.sh shows it with real kernel counters).
        with driver.session() as s:
            login(s, "olivia")
            s.get(ADMIN + "/console/")
            panel = s.wait_for("#op25b")
            self.assertEqual(panel.attribute("data-state"), "not-configured")
            self.assertIn("not configured", s.find("#op25b-note").text)
            self.assertEqual(s.find_all("#chart-op25b"), [])
            # The charts' minute labels are in the display zone, and say which.
            self.assertEqual(s.find("#zone").text, "(UTC+09:00)")

    def test_20_allow_list_entry_changes_the_answer(self):
        client = "192.0.2.44"
        self.assertTrue(policy(client).startswith("DEFER"))
        with driver.session() as s:
            login(s, "olivia")
            s.get(ADMIN + "/console/filters")
            # The check form: why is this client greylisted?
            s.wait_for("#check-client").send_keys(client)
            s.find("#check-recipient").send_keys("user@isp.example.jp")
            s.find("#check-submit").click()
            result = s.wait_for("#check-result").text
            self.assertIn("greylist", result)
            s.get(ADMIN + "/console/filters")
            s.wait_for("#allow-value").send_keys(client)
            s.find("#allow-comment").send_keys("partner relay")
            s.find("#allow-add").click()
            self.assertIn("added", s.wait_for("#flash").text)
            self.assertIn(client, s.find("#allow-table").text)
            shot(s, "filters")
        self.assertIn(("client-address", client), allow_entries())
        answer = policy(client)
        self.assertFalse(answer.startswith("DEFER"), answer)
        self.assertTrue(policy("192.0.2.45").startswith("DEFER"), "only that client")

    def test_25_classify_form_says_what_the_cli_says(self):
        names = ["203-0-113-5.adsl.example.net", "mail.example.org",
                 "dhcp-198-51-100-7.pool.example.com"]
        with driver.session() as s:
            login(s, "vera")  # read-only: a viewer may classify
            s.get(ADMIN + "/console/filters")
            s.wait_for("#classify-names").send_keys("\n".join(names))
            s.click_and_load(s.find("#classify-submit"), "#classify-table")
            rows = s.find_all(".classify-row")
            self.assertEqual(len(rows), len(names))
            for name, row in zip(names, rows):
                cli = json.loads(sg("classify", "--json", "--explain", name))
                self.assertIn(name, row.text)
                self.assertEqual(row.attribute("data-class"), cli["class"]["class"], name)
                for rule in cli["matched_rules"]:
                    self.assertIn(rule, row.text, name)
            self.assertEqual(rows[0].attribute("data-class"), "generic")
            self.assertEqual(rows[1].attribute("data-class"), "proper")

    def test_30_report_case_suspension_refuses_submission(self):
        self.assertFalse(policy("203.0.113.5", sasl=ACCOUNT).startswith("5"))
        with open(os.environ["REPORT"], "rb") as f:
            sg("abuse", "ingest", stdin=f.read())
        with driver.session() as s:
            login(s, "olivia")
            s.get(ADMIN + "/console/desk")
            link = s.wait_for(".case-link")
            row = s.find(".case-row").text
            self.assertIn("C-ALICE", row)
            link.click()
            s.wait_for("#case-heading")
            case_url = s.url
            self.assertIn("192.0.2.10", s.find("#reports").text, "raw evidence shown")
            self.assertIn("C-ALICE", s.find(".attribution").text)
            s.find("#step-reason").send_keys("spam run confirmed")
            s.find("#step-confirm").click()
            s.wait_for("#flash")
            self.assertIn("suspend", s.find("#proposal").text)
            self.assertEqual(s.find_all("#step-approve"), [], "an operator cannot approve")
            logout(s)
            # Not suspended yet: a proposal only.
            self.assertFalse(policy("203.0.113.5", sasl=ACCOUNT).startswith("5"))
            login(s, "abe")
            s.get(case_url)
            s.wait_for("#step-approve").click()
            flash = s.wait_for("#flash").text
            self.assertIn("suspended", flash)
            self.assertIn("suspended", s.find("#ladder-step").text)
            shot(s, "case")
        answer = policy("203.0.113.5", sasl=ACCOUNT)
        self.assertTrue(answer.startswith("5"), f"suspended account refused: {answer}")

    def test_40_a_viewer_cannot_change_anything(self):
        before = allow_entries()
        with driver.session() as s:
            login(s, "vera")
            s.get(ADMIN + "/console/filters")
            s.wait_for("#allow-table")
            self.assertEqual(s.find_all("#allow-form"), [])
            self.assertEqual(s.find_all(".allow-remove"), [])
            s.get(ADMIN + "/console/desk")
            s.wait_for(".case-link").click()
            s.wait_for("#case-heading")
            self.assertEqual(s.find_all("#step-form"), [])
            self.assertEqual(s.find_all("#claim-form"), [])
            # Posting anyway, with the viewer's own valid CSRF token: refused.
            csrf = re.search(r'name="csrf" value="([^"]+)"', s.source).group(1)
            status = s.execute("""
                const body = new URLSearchParams({csrf: arguments[0], kind: 'client-address',
                                                  value: '203.0.113.77'});
                const xhr = new XMLHttpRequest();
                xhr.open('POST', '/console/filters/allow/add', false);
                xhr.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
                xhr.send(body.toString());
                return xhr.status;""", csrf)
            self.assertEqual(status, 403)
        self.assertEqual(allow_entries(), before, "nothing changed")

    def test_50_a_post_without_the_csrf_token_is_refused(self):
        before = allow_entries()
        with driver.session() as s:
            login(s, "olivia")
            s.get(ADMIN + "/console/filters")
            s.wait_for("#allow-form")
            status = s.execute("""
                const xhr = new XMLHttpRequest();
                xhr.open('POST', '/console/filters/allow/add', false);
                xhr.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
                xhr.send('kind=client-address&value=203.0.113.78');
                return xhr.status;""")
            self.assertEqual(status, 403)
        self.assertEqual(allow_entries(), before)

    def _open_case_of(self, s, customer):
        s.get(ADMIN + "/console/desk")
        s.wait_for("#case-table")
        for row in s.find_all(".case-row"):
            if customer in row.text:
                row.find(".case-link").click()
                s.wait_for("#case-heading")
                return s.url
        self.fail(f"no case of {customer} in {s.find('#case-table').text}")

    def test_60_claim_on_a_terminated_case(self):
        with driver.session() as s:
            login(s, "olivia")
            case_url = self._open_case_of(s, "C-ALICE")
            self.assertEqual(len(s.find_all(".claim-row")), 0, "no claims yet")
            s.find("#step-reason").send_keys("repeated spam after suspension")
            s.find("#step-terminate").click()
            self.assertIn("terminated", s.wait_for("#flash").text)
            self.assertIn("terminated", s.find("#ladder-step").text)
            # Times are shown in [server] display_timezone (+09:00 in this run).
            times = [r.find("td").text for r in s.find_all(".audit-row")]
            self.assertTrue(times and all(t.endswith("+09:00") for t in times), times)
            s.find("#claim-amount").send_keys("12000")
            s.find("#claim-basis").send_keys("blocklist removal and cleanup")
            # This page already has the terminate step's flash: wait for the next page.
            flash = s.click_and_load(s.find("#claim-submit"), "#flash").text
            self.assertIn("claim", flash)
            rows = [r.text for r in s.find_all(".claim-row")]
            self.assertEqual(len(rows), 1, rows)
            self.assertIn("12000 JPY", rows[0])
            self.assertIn("blocklist removal", rows[0])
            # A bad amount is refused and files nothing.
            s.get(case_url)
            s.wait_for("#claim-amount").send_keys("0")
            s.find("#claim-basis").send_keys("nothing")
            s.find("#claim-submit").click()
            self.assertIn("positive", s.wait_for("#flash").text)
            self.assertEqual(len(s.find_all(".claim-row")), 1)
        # The suspended account is now terminated: still refused at submission.
        self.assertTrue(policy("203.0.113.5", sasl=ACCOUNT).startswith("5"))

    def test_70_export_downloads_the_case_with_its_evidence(self):
        with open(os.environ["REPORT"], "rb") as f:
            evidence = f.read()
        with driver.session() as s:
            login(s, "olivia")
            self._open_case_of(s, "C-ALICE")
            case_id = s.find("#case-heading").text.split()[1]
            s.find("#export-submit").click()
            path = s.wait_for_download(".tar")
            self.assertIn(f"case-{case_id}", os.path.basename(path))
            # Read before the session ends: the download folder is the profile's.
            with tarfile.open(path, "r:") as tar:
                names = tar.getnames()
                files = {m.name.split("/", 1)[1]: tar.extractfile(m).read()
                         for m in tar.getmembers() if m.isfile()}
        raw = f"raw/{hashlib.sha256(evidence).hexdigest()}.eml"
        self.assertIn(raw, files, names)
        self.assertEqual(files[raw], evidence, "the report exactly as it arrived")
        self.assertTrue(any(n.startswith("reports/") for n in files), names)
        claims = json.loads(files["claims.json"])
        self.assertEqual([c["claim"]["amount"] for c in claims], [12000])
        # The manifest names every other file with its SHA-256.
        manifest = dict(reversed(line.split("  ", 1))
                        for line in files["MANIFEST.sha256"].decode().splitlines())
        for name, data in files.items():
            if name != "MANIFEST.sha256":
                self.assertEqual(manifest.get(name), hashlib.sha256(data).hexdigest(), name)

    def test_80_triage_assign_files_a_case(self):
        sg("customer", "add", "C-BOB", "--name", "Bob", "--contact", "bob@example.jp")
        # A report about an address nobody held: no session matches, so it waits in triage.
        with open(os.environ["REPORT"], "rb") as f:
            report = f.read().decode()
        report = report.replace("192.0.2.10", "203.0.113.200").replace(
            "fb-20261201-0001@", "fb-20261201-0002@")
        sg("abuse", "ingest", stdin=report.encode())
        with driver.session() as s:
            login(s, "olivia")
            s.get(ADMIN + "/console/desk")
            s.wait_for("#triage")
            rows = [r for r in s.find_all(".triage-row") if "203.0.113.200" in r.text]
            self.assertEqual(len(rows), 1, s.find("#triage").text)
            shot(s, "triage")
            rows[0].find(".assign-customer").send_keys("C-BOB")
            rows[0].find(".assign-submit").click()
            flash = s.wait_for("#flash").text
            self.assertRegex(flash, r"filed in case \d+")
            self.assertNotIn("203.0.113.200", s.find("#triage").text)
            self._open_case_of(s, "C-BOB")
            self.assertIn("C-BOB", s.find("#case-customer").text)
            self.assertIn("203.0.113.200", s.find("#reports").text)
            # Nobody else's case: alice's has only her report.
            self._open_case_of(s, "C-ALICE")
            self.assertNotIn("203.0.113.200", s.find("#reports").text)
            # Assigning to a customer nobody knows is refused.
            sg("abuse", "ingest", stdin=report.replace(
                "fb-20261201-0002@", "fb-20261201-0003@").encode())
            s.get(ADMIN + "/console/desk")
            row = [r for r in s.wait_for("#triage") and s.find_all(".triage-row")
                   if "203.0.113.200" in r.text][0]
            row.find(".assign-customer").send_keys("C-NOBODY")
            row.find(".assign-submit").click()
            self.assertNotIn("filed in case", s.wait_for("#flash").text)
            self.assertIn("203.0.113.200", s.find("#triage").text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
