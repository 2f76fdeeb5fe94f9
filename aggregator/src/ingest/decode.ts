// The ingest hot path's decoder. grpc-js would hand the handler proto-loader's output:
// protobufjs decode, then toObject() (a second object tree, every enum looked up as a
// string, every 64-bit integer rebuilt), which cost as much as everything ingest does with
// the batch. Here the same descriptor (proto/gen/descriptor.ts, the one the server and
// reflection serve) is loaded into a protobufjs Root and ReportRequest is decoded with
// protobufjs' generated decoder only: message instances, enums as their numbers, 64-bit
// integers as numbers (like proto-loader's longs: Number: exact below 2^53). Ingest
// normalises both shapes (model.ts), so a batch decoded either way is applied identically
// (test/aggregator/decode.test.ts).

import protobuf from 'protobufjs';
import { descriptor } from '../../../proto/gen/descriptor.js';

const root = protobuf.Root.fromJSON(descriptor);
const ReportRequestType = root.lookupType('plainsight.v1.ReportRequest');

/** A 64-bit integer as protobufjs decodes it (long.js). */
export interface LongLike {
  toNumber(): number;
}

/**
 * Reads 64-bit integers as numbers. protobufjs makes a Long object for each (six per
 * summary), and a batch's summaries live until it is applied: those Longs were most of the
 * decoder's garbage-collection work. The Long made here dies at once. (Fields absent from
 * the message still read as the prototype's shared Long default; num() and nsToMs() take both.)
 */
class NumberReader extends protobuf.BufferReader {
  override int64(): protobuf.Long {
    return (super.int64() as unknown as LongLike).toNumber() as unknown as protobuf.Long;
  }

  override uint64(): protobuf.Long {
    return (super.uint64() as unknown as LongLike).toNumber() as unknown as protobuf.Long;
  }
}

/** ReportRequest bytes → message (the IngestService.Report request deserializer). */
export function decodeReport(buf: Buffer): unknown {
  return ReportRequestType.decode(new NumberReader(buf));
}

/** The inverse, for the ingest log (WAL): same descriptor, same bytes on the wire. */
export function encodeReport(msg: object): Buffer {
  const bytes = ReportRequestType.encode(ReportRequestType.fromObject(msg as Record<string, unknown>)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Enum name → number, from the descriptor (e.g. VERDICT_TLS → 2). */
export function enumValues(name: string): Record<string, number> {
  return root.lookupEnum(`plainsight.v1.${name}`).values;
}
