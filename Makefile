# spamgate: build, install and test.
#   make                      build the release binary (as your user)
#   sudo make install         install binary, systemd unit, default config, docs
#   make install DESTDIR=/tmp/stage PREFIX=/usr   stage for a package
#   sudo make e2e             end-to-end suite (scripts/e2e.sh)
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DOCDIR     ?= $(PREFIX)/share/doc/spamgate
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR ?= /etc
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
DESTDIR    ?=
CARGO      ?= cargo
BIN        := target/release/spamgate

.PHONY: all build install uninstall e2e verify-unit

all: build

build:
	$(CARGO) build --release --locked -p spamgate

# Built only when missing, so `sudo make install` after `make` needs no Rust toolchain
# for root.
$(BIN):
	$(CARGO) build --release --locked -p spamgate

install: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/spamgate
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/bin/spamgate|$(BINDIR)/spamgate|' dist/spamgate.service \
		> $(DESTDIR)$(UNITDIR)/spamgate.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/spamgate.service
	install -D -m 0644 dist/spamgate.sysusers $(DESTDIR)$(SYSUSERSDIR)/spamgate.conf
	install -D -m 0644 dist/spamgate.example.toml $(DESTDIR)$(DOCDIR)/spamgate.example.toml
	install -D -m 0644 docs/postfix.md $(DESTDIR)$(DOCDIR)/postfix.md
	@# Man pages and completions come from the binary's own command line definition.
	rm -rf target/generated
	$(BIN) generate man target/generated/man1
	$(BIN) generate completions bash target/generated >/dev/null
	$(BIN) generate completions zsh target/generated >/dev/null
	$(BIN) generate completions fish target/generated >/dev/null
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1
	install -m 0644 target/generated/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -D -m 0644 target/generated/spamgate.bash $(DESTDIR)$(BASHCOMPDIR)/spamgate
	install -D -m 0644 target/generated/_spamgate $(DESTDIR)$(ZSHCOMPDIR)/_spamgate
	install -D -m 0644 target/generated/spamgate.fish $(DESTDIR)$(FISHCOMPDIR)/spamgate.fish
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/spamgate
	@# Never overwrite the operator's configuration.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/spamgate/spamgate.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/spamgate/spamgate.toml (new default: $(DESTDIR)$(DOCDIR)/spamgate.toml)"; \
	else \
		install -m 0644 dist/spamgate.toml $(DESTDIR)$(SYSCONFDIR)/spamgate/spamgate.toml; \
	fi
	install -D -m 0644 dist/spamgate.toml $(DESTDIR)$(DOCDIR)/spamgate.toml
	@# The system user, only when installing onto this machine.
	@if [ -z "$(DESTDIR)" ] && ! getent passwd spamgate >/dev/null; then \
		if command -v systemd-sysusers >/dev/null; then \
			systemd-sysusers $(SYSUSERSDIR)/spamgate.conf; \
		else \
			useradd --system --home-dir /var/lib/spamgate --no-create-home \
				--shell /usr/sbin/nologin --user-group spamgate; \
		fi; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; next: systemctl enable --now spamgate, then docs/postfix.md"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/spamgate $(DESTDIR)$(UNITDIR)/spamgate.service \
		$(DESTDIR)$(SYSUSERSDIR)/spamgate.conf \
		$(DESTDIR)$(MANDIR)/man1/spamgate.1 $(DESTDIR)$(MANDIR)/man1/spamgate-*.1 \
		$(DESTDIR)$(BASHCOMPDIR)/spamgate $(DESTDIR)$(ZSHCOMPDIR)/_spamgate \
		$(DESTDIR)$(FISHCOMPDIR)/spamgate.fish
	rm -rf $(DESTDIR)$(DOCDIR)
	@echo "kept $(SYSCONFDIR)/spamgate and /var/lib/spamgate"

e2e:
	bash scripts/e2e.sh

# Static check of the unit (needs systemd-analyze and a built binary).
verify-unit: $(BIN)
	sed 's|/usr/local/bin/spamgate|$(CURDIR)/$(BIN)|' dist/spamgate.service > target/spamgate.service
	systemd-analyze verify target/spamgate.service
