/** The authentication audit log (DESIGN.md §7): events, where they are written, and the `audit` command. */
export { AUDIT_EVENTS, type AuditEvent, type AuditEventName, type AuditRecord } from './events.js';
export { createAuditLog, type AuditLog } from './log.js';
export { AuditStream } from './stream.js';
export { AUDIT_OPTIONS, AUDIT_SUMMARY, AUDIT_USAGE, runAuditCommand } from './command.js';
