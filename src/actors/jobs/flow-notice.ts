/**
 * A child of a flow or batch reached its final outcome: one notice on
 * `<prefix>.flows.<parent>.<child>` (docs/wire-format.md 3.9). The stream keeps one message
 * per subject, so a notice sent again (a redelivery after a crash) replaces the first.
 */
import type { ErrorInfo } from '../../core/errors.js';
import type { ChildNotice } from '../../model/flow.js';
import { encodeJson, WIRE_VERSION } from '../../model/job.js';
import type { NaqContext } from '../nats/context.js';

export function tellParent(ctx: NaqContext, parent: string, child: string, status: ChildNotice['status'], error?: ErrorInfo): Promise<unknown> {
  const notice: ChildNotice = { v: WIRE_VERSION, id: child, status };
  if (error) notice.error = { name: error.name, message: error.message, ...(error.code !== undefined ? { code: error.code } : {}) };
  return ctx.publisher.publish(ctx.layout.flowNoticeSubject(parent, child), encodeJson(notice));
}
