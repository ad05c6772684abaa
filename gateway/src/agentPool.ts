import { GatewayError } from './gatewayError.js';
import type { AgentLink } from './agentLink.js';

// The agent links this gateway replica holds. Placement is the routing table's business; this
// is only where a placed build's streams find the link (or learn it is on another replica).
export class AgentPool {
  private readonly links = new Map<string, AgentLink>();

  add(link: AgentLink): void {
    const previous = this.links.get(link.agentId);
    // The same agent reconnecting replaces its old link: the old one is half-dead by definition.
    if (previous && previous !== link) {
      previous.close(new GatewayError('AGENT_LOST', `agent ${link.agentId} reconnected; replacing its previous link`));
    }
    this.links.set(link.agentId, link);
    link.once('closed', () => {
      if (this.links.get(link.agentId) === link) this.links.delete(link.agentId);
    });
  }

  /** The live, described link to an agent on this replica, if there is one. */
  get(agentId: string): AgentLink | undefined {
    const link = this.links.get(agentId);
    return link && !link.closed && link.description !== undefined ? link : undefined;
  }

  list(): AgentLink[] {
    return [...this.links.values()];
  }

  closeAll(reason: GatewayError): void {
    for (const link of this.links.values()) link.close(reason);
  }
}
