// Builds from untrusted CI identities (a fork's pull request, when the project asks for it) run
// on a builder of their own: placement sees a project made for the one build, so the builder
// starts without the real project's cache and is never bound to it, and the fleet terminates it
// (cache and all) as soon as the build is over. Project names cannot contain '~', so these can
// never collide with a real project.
const MARK = '~untrusted~';

export function ephemeralProjectFor(project: string, buildId: string): string {
  return `${project}${MARK}${buildId}`;
}

export function isEphemeralProject(name: string | undefined): boolean {
  return name !== undefined && name.includes(MARK);
}
