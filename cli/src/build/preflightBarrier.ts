// The point every platform's solve waits at until every platform's builder has been checked:
// one refusal (or a builder that could not be reached) stops them all before any build starts,
// and every solve then reports that same first failure.

export class PreflightBarrier {
  private passed = 0;
  private failure: { error: unknown } | undefined;
  private release!: () => void;
  private reject!: (error: unknown) => void;
  /** Resolves once every platform passed; rejects with the first failure. */
  readonly all: Promise<void>;

  constructor(private readonly count: number) {
    this.all = new Promise<void>((resolve, reject) => {
      this.release = resolve;
      this.reject = reject;
    });
    this.all.catch(() => {});
    if (count === 0) this.release();
  }

  pass(): void {
    if (this.failure) return;
    this.passed += 1;
    if (this.passed === this.count) this.release();
  }

  /** The first failure wins; later ones (often consequences of it) are dropped. */
  fail(error: unknown): void {
    if (this.failure || this.passed === this.count) return;
    this.failure = { error };
    this.reject(error);
  }

  /** The failure to report: the first one, when there was one before `error`. */
  firstFailure(error: unknown): unknown {
    return this.failure ? this.failure.error : error;
  }
}
