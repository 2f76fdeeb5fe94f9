// Handshake messages reassembled across TLS records (RFC 8446 §5.1: a message may span
// records, and no other record type may be interleaved with its fragments).

import { CONTENT_HANDSHAKE, type TlsRecord } from './records.js';

export const HANDSHAKE_HELLO_REQUEST = 0;
export const HANDSHAKE_CLIENT_HELLO = 1;
export const HANDSHAKE_SERVER_HELLO = 2;
export const HANDSHAKE_NEW_SESSION_TICKET = 4;
export const HANDSHAKE_END_OF_EARLY_DATA = 5;
export const HANDSHAKE_ENCRYPTED_EXTENSIONS = 8;
export const HANDSHAKE_CERTIFICATE = 11;
export const HANDSHAKE_SERVER_KEY_EXCHANGE = 12;
export const HANDSHAKE_CERTIFICATE_REQUEST = 13;
export const HANDSHAKE_SERVER_HELLO_DONE = 14;
export const HANDSHAKE_CERTIFICATE_VERIFY = 15;
export const HANDSHAKE_CLIENT_KEY_EXCHANGE = 16;
export const HANDSHAKE_FINISHED = 20;

export const HANDSHAKE_HEADER_LENGTH = 4;
/** Largest message body we copy; bigger ones (huge certificate chains) are skipped, their type and length kept. */
export const MAX_HANDSHAKE_MESSAGE = 64 * 1024;
/** Messages kept per direction: a full TLS 1.2 flight has at most ~8. */
export const MAX_HANDSHAKE_MESSAGES = 64;

const EMPTY = new Uint8Array(0);

export interface HandshakeMessage {
  type: number;
  /** Body length from the handshake header. */
  length: number;
  /** Index of the record holding the header, and of the record holding the last byte seen. */
  record: number;
  endRecord: number;
  /**
   * The body. Equal to `length` bytes when the message was complete and within
   * MAX_HANDSHAKE_MESSAGE; shorter when the stream ended inside it (a prefix); empty
   * when it was too large to keep.
   */
  body: Uint8Array;
  /** All `length` body bytes were present in the stream. */
  complete: boolean;
}

/**
 * Handshake messages carried in records[0, untilRecord). The caller chooses `untilRecord`
 * to stop before records that are encrypted (TLS <= 1.2: everything after the sender's
 * ChangeCipherSpec). Bodies are views into `stream` when a message sits in one record,
 * a copy (bounded by MAX_HANDSHAKE_MESSAGE) when it spans records.
 */
export function readHandshakeMessages(stream: Uint8Array, records: TlsRecord[], untilRecord = records.length): HandshakeMessage[] {
  const messages: HandshakeMessage[] = [];
  // The 4-byte handshake header, which may itself be split across records: type, then a u24 length.
  let headerType = 0;
  let headerLength = 0;
  let headerFill = 0;
  let current: HandshakeMessage | null = null;
  let buffer: Uint8Array | null = null; // copy target for a message spanning records
  let fill = 0;
  let skipLeft = 0; // bytes of an oversized message still to pass over

  const abandon = (): void => {
    // A fragment cut off by another record type: keep the header facts, drop the partial body.
    if (current !== null && buffer !== null) current.body = buffer.subarray(0, fill);
    current = null;
    buffer = null;
    headerFill = 0;
    skipLeft = 0;
  };

  const last = Math.min(untilRecord, records.length);
  for (let i = 0; i < last; i++) {
    const r = records[i];
    if (r.type !== CONTENT_HANDSHAKE) {
      abandon();
      continue;
    }
    let p = r.offset;
    const end = r.offset + r.available;
    while (p < end) {
      if (current === null) {
        if (messages.length >= MAX_HANDSHAKE_MESSAGES) return messages;
        while (headerFill < HANDSHAKE_HEADER_LENGTH && p < end) {
          if (headerFill === 0) {
            headerType = stream[p++] | 0; // as a Uint8Array store would: a missing byte reads 0
            headerLength = 0;
          } else {
            headerLength = (headerLength << 8) | stream[p++];
          }
          headerFill++;
        }
        if (headerFill < HANDSHAKE_HEADER_LENGTH) break;
        headerFill = 0;
        const length = headerLength;
        const msg: HandshakeMessage = { type: headerType, length, record: i, endRecord: i, body: EMPTY, complete: false };
        messages.push(msg);
        if (length > MAX_HANDSHAKE_MESSAGE) {
          skipLeft = length;
          current = msg;
        } else if (length <= end - p) {
          msg.body = stream.subarray(p, p + length);
          msg.complete = true;
          p += length;
          continue;
        } else {
          // The body cannot be longer than what is left of the stream: a lying length
          // costs us at most the capture's own size, never a 64 KiB buffer per message.
          buffer = new Uint8Array(Math.min(length, stream.length - p));
          fill = 0;
          current = msg;
        }
      }
      const msg: HandshakeMessage = current;
      msg.endRecord = i;
      if (buffer !== null) {
        const n = Math.min(msg.length - fill, end - p);
        buffer.set(stream.subarray(p, p + n), fill);
        fill += n;
        p += n;
        msg.body = buffer.subarray(0, fill);
        if (fill === msg.length) {
          msg.complete = true;
          current = null;
          buffer = null;
        }
      } else {
        const n = Math.min(skipLeft, end - p);
        skipLeft -= n;
        p += n;
        if (skipLeft === 0) {
          msg.complete = true;
          current = null;
        }
      }
    }
  }
  return messages;
}

/** First message of `type` at or after index `from`. */
export function findMessage(messages: HandshakeMessage[], type: number, from = 0): number {
  for (let i = from; i < messages.length; i++) if (messages[i].type === type) return i;
  return -1;
}
