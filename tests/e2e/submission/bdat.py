# bdat.py HOST PORT LOCAL_ADDR LOGIN PASSWORD RCPT: one message sent with BDAT (RFC 3030
# CHUNKING) instead of DATA, over STARTTLS with AUTH PLAIN; prints the dialogue. swaks
# cannot send BDAT, and mail programs may.
import base64, socket, ssl, sys
host, port, local, login, password, rcpt = sys.argv[1:7]
sock = socket.create_connection((host, int(port)), timeout=30, source_address=(local, 0))
f = sock.makefile("rb")
def read():
    lines = []
    while True:
        line = f.readline().decode().rstrip("\r\n")
        print("<- " + line)
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines
def cmd(text):
    print("-> " + text)
    sock.sendall(text.encode() + b"\r\n")
    return read()
read()
cmd("EHLO customer-pc.example")
cmd("STARTTLS")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
sock = ctx.wrap_socket(sock, server_hostname=host); f = sock.makefile("rb")
cmd("EHLO customer-pc.example")
cmd("AUTH PLAIN " + base64.b64encode(f"\0{login}\0{password}".encode()).decode())
cmd(f"MAIL FROM:<{login}>")
cmd(f"RCPT TO:<{rcpt}>")
body = b"Subject: bdat\r\n\r\nby BDAT\r\n"
print(f"-> BDAT {len(body)} LAST")
sock.sendall(f"BDAT {len(body)} LAST\r\n".encode() + body)
read()
cmd("QUIT")
