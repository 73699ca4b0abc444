# stdin/stdout <-> a TCP port: lets a stdio MCP client reach `harombe_gateway::wrap`
# running inside the test process.
import socket, sys, threading

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))

def up():
    while True:
        data = sys.stdin.buffer.read1(65536)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)

threading.Thread(target=up, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
