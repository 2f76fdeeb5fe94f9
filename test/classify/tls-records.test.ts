import t from 'tap';
import { readHandshakeMessages, MAX_HANDSHAKE_MESSAGE } from '../../agent/src/classify/tls/handshake.js';
import {
  MAX_RECORDS,
  alertName,
  firstPlainAlert,
  plausibleRecordHeader,
  walkRecords,
} from '../../agent/src/classify/tls/records.js';
import { bytes, concat, handshake, record, reframe, u16 } from '../lab/tls-build.js';

t.test('walkRecords', async (t) => {
  t.test('walks consecutive records and reports payload offsets', async (t) => {
    const s = concat(record(22, [1, 2, 3]), record(20, [1]), record(23, new Array(40).fill(0)));
    const w = walkRecords(s);
    t.same(
      w.records.map((r) => [r.type, r.offset, r.length, r.available]),
      [
        [22, 5, 3, 3],
        [20, 13, 1, 1],
        [23, 19, 40, 40],
      ],
    );
    t.equal(w.malformed, false);
    t.equal(w.truncated, false);
  });

  t.test('a record cut by the end of the capture keeps its declared length', async (t) => {
    const s = record(23, new Array(100).fill(1)).subarray(0, 30);
    const w = walkRecords(s);
    t.equal(w.records.length, 1);
    t.equal(w.records[0].length, 100);
    t.equal(w.records[0].available, 25);
    t.equal(w.truncated, true);
  });

  t.test('a partial header ends the walk as truncated, not malformed', async (t) => {
    const w = walkRecords(concat(record(22, [1]), bytes([23, 3, 3])));
    t.equal(w.records.length, 1);
    t.equal(w.truncated, true);
    t.equal(w.malformed, false);
  });

  t.test('non-TLS bytes after records are malformed', async (t) => {
    const w = walkRecords(concat(record(22, [1]), new TextEncoder().encode('HTTP/1.1 400 Bad Request\r\n')));
    t.equal(w.records.length, 1);
    t.equal(w.malformed, true);
  });

  t.test('oversized record lengths are not TLS', async (t) => {
    t.equal(plausibleRecordHeader(bytes([23, 3, 3], u16(18433)), 0), false);
    t.equal(plausibleRecordHeader(bytes([23, 3, 3], u16(18432)), 0), true);
    t.equal(plausibleRecordHeader(bytes([22, 3, 5]), 0), false);
    t.equal(plausibleRecordHeader(bytes([22, 2]), 0), false);
    t.equal(plausibleRecordHeader(bytes([0x48, 0x54]), 0), false);
  });

  t.test('stops at MAX_RECORDS', async (t) => {
    const many = concat(...Array.from({ length: MAX_RECORDS + 10 }, () => record(23, [0])));
    const w = walkRecords(many);
    t.equal(w.records.length, MAX_RECORDS);
    t.equal(w.capped, true);
  });
});

t.test('readHandshakeMessages', async (t) => {
  const msgs = concat(handshake(1, new Array(300).fill(0xaa)), handshake(11, new Array(10).fill(0xbb)), handshake(14, []));

  t.test('one record, several messages: views, no copies', async (t) => {
    const s = record(22, msgs);
    const m = readHandshakeMessages(s, walkRecords(s).records);
    t.same(
      m.map((x) => [x.type, x.length, x.complete, x.body.length]),
      [
        [1, 300, true, 300],
        [11, 10, true, 10],
        [14, 0, true, 0],
      ],
    );
    t.equal(m[0].body.buffer, s.buffer, 'body is a view into the stream');
  });

  for (const size of [2, 3, 4, 5, 7, 64, 299]) {
    t.test(`messages split over records of ${size} bytes (headers split too)`, async (t) => {
      const s = reframe(msgs, size);
      const m = readHandshakeMessages(s, walkRecords(s).records);
      t.same(
        m.map((x) => [x.type, x.length, x.complete]),
        [
          [1, 300, true],
          [11, 10, true],
          [14, 0, true],
        ],
      );
      t.ok(m[0].body.every((b) => b === 0xaa));
      t.ok(m[1].body.every((b) => b === 0xbb));
      t.ok(m[1].endRecord >= m[1].record);
    });
  }

  t.test('stops at untilRecord (TLS <= 1.2: encrypted after ChangeCipherSpec)', async (t) => {
    const s = concat(record(22, handshake(1, [1, 2])), record(20, [1]), record(22, [0x0b, 0, 0, 1, 9]));
    const w = walkRecords(s);
    t.same(
      readHandshakeMessages(s, w.records, 1).map((x) => x.type),
      [1],
    );
    t.same(
      readHandshakeMessages(s, w.records).map((x) => x.type),
      [1, 11],
    );
  });

  t.test('a message cut by the end of the capture is incomplete, with the prefix as body', async (t) => {
    const s = reframe(msgs, 100).subarray(0, 150);
    const m = readHandshakeMessages(s, walkRecords(s).records);
    t.equal(m.length, 1);
    t.equal(m[0].complete, false);
    t.equal(m[0].length, 300);
    t.ok(m[0].body.length > 0 && m[0].body.length < 300);
  });

  t.test('another record type interleaved abandons the fragment', async (t) => {
    const s = concat(record(22, handshake(1, new Array(20).fill(1)).subarray(0, 10)), record(21, [2, 40]), record(22, handshake(2, [5])));
    const m = readHandshakeMessages(s, walkRecords(s).records);
    t.same(
      m.map((x) => [x.type, x.complete]),
      [
        [1, false],
        [2, true],
      ],
    );
  });

  t.test('oversized messages keep type and length, skip the body', async (t) => {
    const big = MAX_HANDSHAKE_MESSAGE + 1000;
    const body = new Uint8Array(big);
    const s = concat(reframe(handshake(11, body), 16384), record(22, handshake(14, [])));
    // reframe + the trailing record form one run of handshake records
    const m = readHandshakeMessages(s, walkRecords(s).records);
    t.same(
      m.map((x) => [x.type, x.length, x.complete, x.body.length]),
      [
        [11, big, true, 0],
        [14, 0, true, 0],
      ],
    );
  });
});

t.test('alerts', async (t) => {
  const s = concat(record(22, handshake(1, [0])), record(21, [2, 40]));
  const a = firstPlainAlert(s, walkRecords(s).records);
  t.same(a, { level: 2, description: 40, record: 1 });
  t.equal(alertName(40), 'handshake_failure');
  t.equal(alertName(116), 'certificate_required');
  t.equal(alertName(250), 'alert_250');
  const enc = concat(record(21, new Array(26).fill(3)));
  t.equal(firstPlainAlert(enc, walkRecords(enc).records), undefined, 'encrypted alerts are not read');
});
