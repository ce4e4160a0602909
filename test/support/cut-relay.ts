/** A TCP relay in front of a Linux Espruino's console that cuts the connection after a given
 * number of bytes from the host: what a lost link does to an upload (test/support/*-flash.ts). */
import { createServer, connect } from 'node:net';
import type { Server } from 'node:net';

/** A running relay: its server, what the host sent through it so far, and how to stop it. */
export interface Relay {
  server: Server;
  sent(): Buffer;
  close(): Promise<void>;
}

/** The board's console, tcp://127.0.0.1:PORT: $E4_BOARD_PORT, set by host-sim/tools/linux-board.ts. */
export function boardPort(): string {
  const port = process.env.E4_BOARD_PORT;
  if (!port) throw new Error('E4_BOARD_PORT is not set: run inside host-sim/tools/linux-board.ts');
  return port;
}

/** The TCP port number of boardPort(). */
function boardPortOf(url = boardPort()): number {
  const m = /:(\d+)\/?$/.exec(url);
  if (!m) throw new Error(`E4_BOARD_PORT ${JSON.stringify(url)}: expected tcp://host:port`);
  return Number(m[1]);
}

/** A relay on RELAY_PORT to the console that closes both sides once `cut` bytes went to the board
 * (null: never). Records what the host sent. */
export const RELAY_PORT = 2400;
export function relay(cut: number | null, boardPort = boardPortOf()): Promise<Relay> {
  const sent: Buffer[] = [];
  let total = 0;
  const server = createServer((c) => {
    const b = connect(Number(boardPort), '127.0.0.1');
    b.on('data', (d) => c.write(d));
    b.on('error', () => c.destroy());
    c.on('error', () => b.destroy());
    b.on('close', () => c.destroy());
    c.on('close', () => b.destroy());
    c.on('data', (d) => {
      if (cut !== null && total + d.length >= cut) {
        const part = d.subarray(0, cut - total);
        total = cut;
        sent.push(part);
        b.write(part, () => {
          b.destroy();
          c.destroy();
        });
        return;
      }
      total += d.length;
      sent.push(d);
      b.write(d);
    });
  });
  return new Promise((r) =>
    server.listen(RELAY_PORT, '127.0.0.1', () =>
      r({ server, sent: () => Buffer.concat(sent), close: () => new Promise<void>((q) => server.close(() => q())) }),
    ),
  );
}
