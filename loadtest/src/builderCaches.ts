// The cache model for placers that share builders between projects (random, consistent hashing):
// each builder remembers the last K projects it built, most recent first, and a build is warm
// when its project is among them at placement. K=1 is what Slipway's one-project binding keeps,
// so a comparison at K=1 is like for like.
export class BuilderCaches {
  readonly k: number;
  private readonly recent: string[][];

  constructor(builders: number, k: number) {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`a builder cache holds at least one project, got K=${k}`);
    this.k = k;
    this.recent = Array.from({ length: builders }, () => []);
  }

  holds(builder: number, project: string): boolean {
    return this.list(builder).includes(project);
  }

  /** A build of `project` started on the builder: it becomes the most recent, the oldest beyond K goes. */
  record(builder: number, project: string): void {
    const list = this.list(builder);
    const at = list.indexOf(project);
    if (at >= 0) list.splice(at, 1);
    list.unshift(project);
    if (list.length > this.k) list.length = this.k;
  }

  /** Most recent first. */
  projects(builder: number): readonly string[] {
    return [...this.list(builder)];
  }

  private list(builder: number): string[] {
    const list = this.recent[builder];
    if (list === undefined) throw new RangeError(`no builder ${builder} (there are ${this.recent.length})`);
    return list;
  }
}
