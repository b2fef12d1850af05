/** Sessions: the manager the request pipeline uses, the stores behind it, and their configuration. */
export { SessionManager, type SessionManagerOptions, type SessionHandle, type ResumeResult } from './sessions.js';
export type { Session, Claims } from './session.js';
export { systemClock, type Clock, type KeyValueStore } from './store.js';
export { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
export { RedisStore, createRedisClient, type RedisClient, type RedisConfig } from './redis-store.js';
export { runSessionsCommand, SESSIONS_OPTIONS, SESSIONS_SUMMARY, SESSIONS_USAGE } from './command.js';
