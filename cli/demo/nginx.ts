// One nginx configuration for the demo and the test lab: HTTPS in the foreground, every
// path under its own prefix (no writes to /var), optionally requiring client certificates.

export interface NginxOptions {
  /** Directory for pid and temp files. */
  prefix: string;
  /** Addresses to listen on (IPv6 without brackets). */
  listen: readonly string[];
  port: number;
  certs: { cert: string; key: string; ca: string };
  /** ssl_verify_client on: mutual TLS. */
  verifyClient: boolean;
  /** ssl_protocols value, e.g. "TLSv1.2". */
  protocols?: string;
}

export function nginxConfig(o: NginxOptions): string {
  const listen = o.listen.map((l) => `    listen ${l.includes(':') ? `[${l}]` : l}:${o.port} ssl;`).join('\n');
  return `daemon off;
master_process on;
worker_processes 1;
pid ${o.prefix}/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${o.prefix}/body;
  proxy_temp_path ${o.prefix}/proxy;
  fastcgi_temp_path ${o.prefix}/fastcgi;
  uwsgi_temp_path ${o.prefix}/uwsgi;
  scgi_temp_path ${o.prefix}/scgi;
  server {
${listen}
    ssl_certificate ${o.certs.cert};
    ssl_certificate_key ${o.certs.key};
    ssl_client_certificate ${o.certs.ca};
    ssl_verify_client ${o.verifyClient ? 'on' : 'off'};
    ssl_protocols ${o.protocols ?? 'TLSv1.2 TLSv1.3'};
    ssl_session_tickets off;
    location / { return 200 "ok\\n"; }
  }
}
`;
}
