import t from 'tap';
import { detectMesh } from '../../agent/src/classify/mesh.js';
import type { TlsDetails } from '../../agent/src/classify/types.js';

const tls = (over: Partial<TlsDetails>): TlsDetails => ({ clientCertificate: 'unknown', version: '1.3', ...over });

t.test('no TLS, no mesh', async (t) => {
  t.same(detectMesh(undefined, 15008), { mesh: 'none' });
  t.same(detectMesh(tls({ alpn: ['h2', 'http/1.1'], sni: 'api.example.com' }), 443), { mesh: 'none' });
});

t.test('Istio sidecar', async (t) => {
  for (const alpn of ['istio-peer-exchange', 'istio', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2']) {
    t.same(detectMesh(tls({ alpn: ['h2', alpn] }), 8080), { mesh: 'istio', evidence: `ALPN ${alpn}` }, alpn);
  }
  t.same(detectMesh(tls({ sni: 'outbound_.8080_._.reviews.default.svc.cluster.local' }), 8080), {
    mesh: 'istio',
    evidence: 'SNI outbound_.8080_._.reviews.default.svc.cluster.local',
  });
  t.equal(detectMesh(tls({ sni: 'outbound_.9080_.v2_.reviews.bookinfo.svc.cluster.local' }), 9080).mesh, 'istio', 'with a subset');
  t.equal(detectMesh(tls({ sni: 'outbound.example.com' }), 443).mesh, 'none');
  t.equal(detectMesh(tls({ alpn: ['istio-h3'] }), 443).mesh, 'none', 'only the known values');
});

t.test('Istio ambient (HBONE on 15008)', async (t) => {
  t.same(detectMesh(tls({ alpn: ['h2'] }), 15008), { mesh: 'istio-ambient', evidence: 'TLS with ALPN h2 on HBONE port 15008' });
  t.equal(detectMesh(tls({ alpnSelected: 'h2' }), 15008).mesh, 'istio-ambient');
  t.same(detectMesh(tls({}), 15008), { mesh: 'istio-ambient', evidence: 'TLS on HBONE port 15008' });
  t.equal(detectMesh(tls({ alpn: ['transport.l5d.io/v1'] }), 15008).mesh, 'linkerd', 'other mesh evidence wins over the bare port');
  t.equal(detectMesh(tls({ alpn: ['h2'] }), 8443).mesh, 'none', 'h2 elsewhere is just h2');
});

t.test('Linkerd', async (t) => {
  t.same(detectMesh(tls({ alpn: ['transport.l5d.io/v1'] }), 8080), { mesh: 'linkerd', evidence: 'ALPN transport.l5d.io/v1' });
  t.equal(detectMesh(tls({ sni: 'web.emojivoto.serviceaccount.identity.linkerd.cluster.local' }), 8080).mesh, 'linkerd');
  t.equal(detectMesh(tls({ sni: 'web.emojivoto.serviceaccount.identity.linkerd.prod.example.org' }), 8080).mesh, 'linkerd', 'any trust domain');
  t.equal(detectMesh(tls({ sni: 'serviceaccount.identity.linkerd.cluster.local' }), 8080).mesh, 'none', 'needs <sa>.<ns>. before it');
  t.same(detectMesh(tls({}), 4143), { mesh: 'linkerd', evidence: 'TLS on Linkerd inbound port 4143' });
});

t.test('Consul service mesh', async (t) => {
  const td = '7f2a9c4e-1b3d-4e5f-8a6b-0c1d2e3f4a5b.consul';
  t.same(detectMesh(tls({ sni: `web.default.dc1.internal.${td}` }), 20000), { mesh: 'consul', evidence: `SNI web.default.dc1.internal.${td}` });
  t.equal(detectMesh(tls({ sni: `v2.web.default.dc1.internal.${td}` }), 20000).mesh, 'consul', 'subset');
  t.equal(detectMesh(tls({ sni: `web.default.team-a.dc1.internal-v1.${td}` }), 20000).mesh, 'consul', 'admin partition');
  t.equal(detectMesh(tls({ sni: `v2.web.default.team-a.dc1.internal-v1.${td}` }), 20000).mesh, 'consul', 'partition + subset');
  t.equal(detectMesh(tls({ sni: `web.default.dc1.query.${td}` }), 20000).mesh, 'consul', 'prepared query');
  t.equal(detectMesh(tls({ sni: 'web.service.consul' }), 443).mesh, 'none', 'Consul DNS names are not mesh SNI');
  t.equal(detectMesh(tls({ sni: 'internal.example.consul' }), 443).mesh, 'none');
});

t.test('case-insensitive SNI, evidence keeps the original', async (t) => {
  const r = detectMesh(tls({ sni: 'Outbound_.80_._.Web.Default.svc.cluster.local' }), 80);
  t.equal(r.mesh, 'istio');
  t.equal(r.evidence, 'SNI Outbound_.80_._.Web.Default.svc.cluster.local');
});
