/**
 * A TCP proxy for half-open connection tests. `freeze()` makes every existing connection go
 * silent in both directions without closing it: no byte, no FIN, no RST reaches either peer,
 * as when a NAT entry or a firewall drops a link. Connections made after a freeze are
 * forwarded normally, so a client that notices can reconnect through the same proxy.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** Connections accepted so far, including closed ones: a reconnect makes it grow. */
  readonly accepted: number;
  /** Existing connections stop forwarding, sockets left open. */
  freeze(): void;
  /** Frozen connections forward again (what was held back goes through, as TCP would). */
  thaw(): void;
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream: Socket;
  frozen: boolean;
}

function forward(link: Link): void {
  link.client.pipe(link.upstream);
  link.upstream.pipe(link.client);
}

function hold(link: Link): void {
  link.client.unpipe(link.upstream);
  link.upstream.unpipe(link.client);
  // Unpiped sockets would otherwise keep reading and drop what they read; paused, they stop
  // reading once their buffer is full, and the kernel's flow control does the rest.
  link.client.pause();
  link.upstream.pause();
}

export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const links = new Set<Link>();
  let accepted = 0;

  const drop = (link: Link) => {
    links.delete(link);
    link.client.destroy();
    link.upstream.destroy();
  };

  const server = createServer((client) => {
    accepted++;
    const link: Link = { client, upstream: connect(target.port, target.host ?? '127.0.0.1'), frozen: false };
    links.add(link);
    // One side closing or failing ends the link, except while frozen: then not even a close
    // may get through (it is passed on at thaw).
    const ended = () => {
      if (!link.frozen) drop(link);
    };
    for (const socket of [link.client, link.upstream]) socket.on('error', ended).on('close', ended);
    forward(link);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('tcp proxy: no port');
  const port = address.port;

  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    freeze() {
      for (const link of links) {
        if (link.frozen) continue;
        link.frozen = true;
        hold(link);
      }
    },
    thaw() {
      for (const link of links) {
        if (!link.frozen) continue;
        link.frozen = false;
        if (link.client.destroyed || link.upstream.destroyed) drop(link);
        else forward(link);
      }
    },
    async close() {
      for (const link of links) drop(link);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
