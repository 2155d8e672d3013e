/** A fleet node's view of its fleet, as `GET /api/overview` shows it under `fleet` (null on a single relay). */
export interface FleetView {
  /** This node's name (--node). */
  node: string;
  /** Where services reach this node (--advertise), `host:port`. */
  address: string;
  /** Where services reach the other nodes alive in etcd, `host:port`, as last read (sorted). */
  peers: string[];
  etcd: {
    /** Whether etcd answered this node's last request. */
    reachable: boolean;
    /** The last request that failed, even when etcd answered since; null when none did. */
    lastError: string | null;
    /** When it failed, milliseconds since the epoch. */
    lastErrorAt: number | null;
  };
}
