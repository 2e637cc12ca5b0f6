"""GitHub Actions OIDC: the rules saying which repositories and refs may deploy a workspace
(admin), and the exchange of a job's OIDC token for a short-lived token on that workspace.

The exchange needs no dockyard token: the verified JWT is the credential. A caller whose
token verifies but that no rule allows is told so (403) in the same words whether or not the
workspace exists, so a job learns nothing about other workspaces.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.controller import auth, github_oidc, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import GithubOidcRule, Workspace
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal
from dockyard.errors import Forbidden, InvalidInput, NotFound
from dockyard.settings import Settings

RULE_ROLES = ("read", "deploy")
NAME_LENGTH = 128  # Token.name


def discovery(settings: Settings) -> dict[str, Any]:
    """What a workflow needs to request its token: the audience and the issuer trusted."""
    return {
        "issuer": settings.github_oidc_issuer,
        "audience": settings.oidc_audience,
        "token_lifetime_s": settings.github_oidc_token_s,
    }


def exchange(ctl: Controller, token: str, workspace: str) -> dict[str, Any]:
    """A token limited to `workspace`, with the best role a matching rule gives, expiring
    after DOCKYARD_GITHUB_OIDC_TOKEN_S."""
    settings = ctl.settings
    now = ctl.clock.now()
    claims = github_oidc.verify(
        token,
        ctl.github_jwks.key,
        settings.github_oidc_issuer.rstrip("/"),
        settings.oidc_audience,
        now,
    )
    with ctl.db.session() as session:
        ws = _workspace_or_none(session, workspace)
        allowed = rules(session, ws) if ws is not None else []
        role = allowed_role(allowed, claims, workspace)
        assert ws is not None  # a rule matched
        expires = now + timedelta(seconds=settings.github_oidc_token_s)
        clear, row = auth.create(
            session,
            token_name(claims),
            role,
            ws,
            expires_at=expires,
            source=auth.FROM_GITHUB_OIDC,
            now=now,
        )
        return {**auth.as_dict(row, ws.name), "token": clear}


def allowed_role(rules: list[GithubOidcRule], claims: github_oidc.Claims, workspace: str) -> str:
    """The highest role of the rules matching the job's repository and ref."""
    repository = claims.repository.lower()
    same_repo = [r for r in rules if r.repository == repository]
    if not same_repo:
        raise Forbidden(
            f"GitHub OIDC: repository {claims.repository or '(none)'} may not act on workspace"
            f" {workspace}; an admin allows it with `dockyard workspace allow-github-oidc"
            f" {workspace} --repo {claims.repository or 'OWNER/NAME'} --ref REF`",
            code=github_oidc.REPOSITORY_NOT_ALLOWED,
        )
    matching = [r.role for r in same_repo if github_oidc.ref_matches(r.ref, claims.ref)]
    if not matching:
        refs = ", ".join(sorted(r.ref for r in same_repo))
        raise Forbidden(
            f"GitHub OIDC: ref {claims.ref or '(none)'} of {claims.repository} may not act on"
            f" workspace {workspace} (allowed: {refs})",
            code=github_oidc.REF_NOT_ALLOWED,
        )
    return max(matching, key=auth.ROLES.index)


def token_name(claims: github_oidc.Claims) -> str:
    name = f"github-oidc:{claims.repository}@{claims.ref} run {claims.run_id}"
    return name if len(name) <= NAME_LENGTH else name[: NAME_LENGTH - 1] + "…"


def list_rules(ctl: Controller, principal: Principal, name: str) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        return [rule_dict(r, ws.name) for r in rules(session, ws)]


def allow(
    ctl: Controller, principal: Principal, name: str, repository: str, ref: str, role: str
) -> dict[str, Any]:
    """Add (or change the role of) the rule for `repository` and `ref` (admin)."""
    repository, ref = github_oidc.check_repository(repository), github_oidc.check_ref(ref)
    if role not in RULE_ROLES:
        raise InvalidInput(f"role {role!r} cannot be given to GitHub jobs; use read or deploy")
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        rule = _rule(session, ws, repository, ref)
        if rule is None:
            rule = GithubOidcRule(
                workspace_id=ws.id,
                repository=repository,
                ref=ref,
                role=role,
                created_at=ctl.clock.now(),
            )
            session.add(rule)
        rule.role = role
        session.flush()
        return rule_dict(rule, ws.name)


def remove(
    ctl: Controller, principal: Principal, name: str, repository: str, ref: str
) -> dict[str, Any]:
    repository, ref = github_oidc.check_repository(repository), github_oidc.check_ref(ref)
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        rule = _rule(session, ws, repository, ref)
        if rule is None:
            raise NotFound(
                f"workspace {name} has no GitHub OIDC rule for {repository} {ref};"
                f" `dockyard workspace info {name}` lists them"
            )
        out = rule_dict(rule, ws.name)
        session.delete(rule)
        return out


def rule_dict(rule: GithubOidcRule, workspace: str) -> dict[str, Any]:
    return {
        "workspace": workspace,
        "repository": rule.repository,
        "ref": rule.ref,
        "role": rule.role,
        "created_at": rule.created_at.isoformat(),
    }


def rules(session: Session, ws: Workspace) -> list[GithubOidcRule]:
    query = select(GithubOidcRule).where(GithubOidcRule.workspace_id == ws.id)
    return list(session.scalars(query.order_by(GithubOidcRule.id)))


def _rule(session: Session, ws: Workspace, repository: str, ref: str) -> GithubOidcRule | None:
    return session.scalar(
        select(GithubOidcRule).where(
            GithubOidcRule.workspace_id == ws.id,
            GithubOidcRule.repository == repository,
            GithubOidcRule.ref == ref,
        )
    )


def _workspace_or_none(session: Session, name: str) -> Workspace | None:
    try:
        return workspaces.get(session, name)
    except (NotFound, InvalidInput):
        return None
