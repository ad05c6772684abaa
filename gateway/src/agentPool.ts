import type { Platform } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';
import type { AgentLink } from './agentLink.js';

// The agents connected to this gateway replica. Placement here is least-loaded within a
// platform; project affinity and the shared routing table come with the placement work.
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

  pick(platform: Platform): AgentLink {
    let best: AgentLink | undefined;
    let seen = 0;
    for (const link of this.links.values()) {
      if (link.platform !== platform || link.description === undefined) continue;
      seen++;
      if (!link.hasCapacity()) continue;
      if (!best || link.activeStreams / link.maxStreams < best.activeStreams / best.maxStreams) best = link;
    }
    if (best) return best;
    if (seen === 0) throw new GatewayError('NO_AGENT', `no agent for platform ${platform} is connected`);
    throw new GatewayError('NO_CAPACITY', `all ${seen} agent(s) for ${platform} are full or draining`);
  }

  list(): AgentLink[] {
    return [...this.links.values()];
  }

  closeAll(reason: GatewayError): void {
    for (const link of this.links.values()) link.close(reason);
  }
}
