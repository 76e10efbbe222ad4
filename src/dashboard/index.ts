/** The web dashboard: start it beside a naq (`startDashboardFor`) or from parts (`startDashboard`). */
import type { InspectionEvent, Observer } from 'xstate';
import { configSecrets, type NaqConfig } from '../config/index.js';
import type { Logger } from '../core/log.js';
import type { Naq } from '../naq.js';
import { ActorTree } from './actor-tree.js';
import { backendFromNaq } from './backend.js';
import { startDashboard, type DashboardServer } from './server.js';

export { ActorTree } from './actor-tree.js';
export { backendFromNaq, type DashboardBackend } from './backend.js';
export { startDashboard, type DashboardOptions, type DashboardServer } from './server.js';

export interface DashboardFlags {
  port?: number | undefined;
  host?: string | undefined;
  readOnly?: boolean | undefined;
  hidePayloads?: boolean | undefined;
}

/** An inspection observer that feeds both the dashboard's actor tree and another observer (the inspector's). */
export function inspectBoth(tree: ActorTree, other?: Observer<InspectionEvent>): Observer<InspectionEvent> {
  if (!other) return tree.observer;
  return {
    next: (event) => {
      tree.observer.next?.(event);
      other.next?.(event);
    },
  };
}

/** Serves the dashboard of `naq` as `config.dashboard` (and the flags over it) say. */
export function startDashboardFor(naq: Naq<any>, config: NaqConfig, logger: Logger, tree: ActorTree, flags: DashboardFlags = {}): Promise<DashboardServer> {
  return startDashboard({
    backend: backendFromNaq(naq),
    logger,
    host: flags.host ?? config.dashboard.host,
    port: flags.port ?? config.dashboard.port,
    auth: { token: config.dashboard.token, user: config.dashboard.user, password: config.dashboard.password },
    readOnly: Boolean(flags.readOnly),
    hidePayloads: Boolean(flags.hidePayloads),
    secrets: configSecrets(config),
    tree,
  });
}
