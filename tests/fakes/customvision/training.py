"""Training API routes of the fake: domains, projects, tags, training, iterations, performance and
publishing. Images (images.py) and export (export.py) have their own modules."""
from __future__ import annotations

import time

from tests.fakes.customvision.server import routes
from tests.fakes.customvision.state import (
    DOMAINS,
    DOMAINS_BY_ID,
    GENERAL_DOMAIN_ID,
    MIN_IMAGES_PER_TAG,
    Iteration,
    Project,
    Tag,
    bad_request,
    new_id,
    not_found,
)
from tests.fakes.toymodel import ToyModel

MAX_TAGS_PER_PROJECT = 500  # S0 tier
MAX_ITERATIONS_PER_PROJECT = 20  # S0 tier; past it the service (and imgcls, before asking) refuses to train
TAG_TYPES = ("Regular", "Negative", "GeneralProduct")


def canonical(value: str | None, allowed, code: str, what: str) -> str | None:
    """The service matches enum values case-insensitively and answers with their canonical spelling."""
    if value is None:
        return None
    for option in allowed:
        if option.lower() == value.lower():
            return option
    raise bad_request(code, f"Unknown {what} '{value}'.")


def iteration_of(project: Project, iteration_id: str) -> Iteration:
    iteration = project.iterations.get(iteration_id.lower())
    if iteration is None:
        raise not_found("NotFoundIteration", f"Iteration not found: {iteration_id}")
    return iteration


def _tag(project: Project, tag_id: str) -> Tag:
    tag = project.tags.get(tag_id.lower())
    if tag is None:
        raise not_found("NotFoundTag", f"Tag not found: {tag_id}")
    return tag


# --- domains -------------------------------------------------------------------------------------

def get_domains(fake, req):
    return 200, [d.to_json() for d in DOMAINS]


def get_domain(fake, req, domain_id):
    domain = DOMAINS_BY_ID.get(domain_id.lower())
    if domain is None:
        raise not_found("NotFoundDomain", f"Domain not found: {domain_id}")
    return 200, domain.to_json()


# --- projects ------------------------------------------------------------------------------------

def _settings(domain_id: str | None, classification_type: str | None, platforms: list[str]):
    domain = DOMAINS_BY_ID.get((domain_id or GENERAL_DOMAIN_ID).lower())
    if domain is None:
        raise bad_request("BadRequestProjectUnknownDomain", f"Unknown domain id '{domain_id}'.")
    if domain.type == "Classification":
        classification_type = canonical(classification_type or "Multiclass", ("Multiclass", "Multilabel"),
                                         "BadRequestProjectUnknownClassification", "classification type")
    else:
        classification_type = None
    for platform in platforms:
        if platform not in domain.exportable_platforms:
            raise bad_request("BadRequestProjectUnsupportedExportPlatform",
                              f"Domain '{domain.name}' cannot export to '{platform}'.")
    return domain, classification_type


def get_projects(fake, req):
    return 200, [p.to_json() for p in fake.state.projects.values()]


def create_project(fake, req):
    name = (req.arg("name") or "").strip()
    if not name:
        raise bad_request("BadRequestProjectName", "Project name cannot be empty.")
    platforms = [p for p in (req.arg("targetExportPlatforms") or "").split(",") if p]
    domain, ctype = _settings(req.arg("domainId"), req.arg("classificationType"), platforms)
    now = time.time()
    project = Project(new_id(), name, req.arg("description"), domain.id, ctype, platforms, now, now)
    fake.state.projects[project.id] = project
    return 200, project.to_json()


def get_project(fake, req, project_id):
    return 200, fake.state.project(project_id).to_json()


def update_project(fake, req, project_id):
    project = fake.state.project(project_id)
    body = req.json() or {}
    settings = body.get("settings") or {}
    name = body.get("name", project.name)
    if not (name or "").strip():
        raise bad_request("BadRequestProjectName", "Project name cannot be empty.")
    platforms = settings.get("targetExportPlatforms")
    platforms = project.target_export_platforms if platforms is None else platforms
    domain, ctype = _settings(settings.get("domainId") or project.domain_id,
                              settings.get("classificationType") or project.classification_type, platforms)
    if domain.type != project.domain.type:
        raise bad_request("BadRequestProjectUnsupportedDomainTypeChange",
                          f"Cannot change a {project.domain.type} project to a {domain.type} domain.")
    project.name, project.description = name, body.get("description", project.description)
    project.domain_id, project.classification_type = domain.id, ctype
    project.target_export_platforms = list(platforms)
    project.last_modified = time.time()
    return 200, project.to_json()


def delete_project(fake, req, project_id):
    project = fake.state.project(project_id)
    published = project.published()
    if published:
        raise bad_request("BadRequestIterationIsPublished",
                          f"Cannot delete a project with a published iteration; unpublish "
                          f"'{published[0].publish_name}' first.")
    del fake.state.projects[project.id]
    return 204, None


# --- tags ----------------------------------------------------------------------------------------

def get_tags(fake, req, project_id):
    project = fake.state.project(project_id)
    iteration_id = req.arg("iterationId")
    if iteration_id:
        iteration = iteration_of(project, iteration_id)
        return 200, [t.to_json(sum(1 for _, tids in iteration.examples if t.id in tids))
                     for t in iteration.tags.values()]
    return 200, [t.to_json(project.tag_image_count(t.id)) for t in project.tags.values()]


def _check_tag_name(project: Project, name: str | None, tag_id: str | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise bad_request("BadRequestTagName", "Tag name cannot be empty.")
    if any(t.name.lower() == name.lower() and t.id != tag_id for t in project.tags.values()):
        raise bad_request("BadRequestTagNameNotUnique", "Name not unique")
    return name


def _check_tag_type(project: Project, tag_type: str | None, tag_id: str | None = None) -> str:
    tag_type = canonical(tag_type or "Regular", TAG_TYPES, "BadRequestTagType", "tag type")
    if tag_type == "Negative" and any(t.type == "Negative" and t.id != tag_id for t in project.tags.values()):
        raise bad_request("BadRequestMultipleNegativeTag", "A project can only have one negative tag.")
    return tag_type


def create_tag(fake, req, project_id):
    project = fake.state.project(project_id)
    name = _check_tag_name(project, req.arg("name"))
    tag_type = _check_tag_type(project, req.arg("type"))
    if len(project.tags) >= MAX_TAGS_PER_PROJECT:
        raise bad_request("BadRequestExceedTagPerProjectLimit",
                          f"The project already has {MAX_TAGS_PER_PROJECT} tags.")
    tag = Tag(new_id(), name, req.arg("description"), tag_type)
    project.tags[tag.id] = tag
    return 200, tag.to_json(0)


def get_tag(fake, req, project_id, tag_id):
    project = fake.state.project(project_id)
    iteration_id = req.arg("iterationId")
    if iteration_id:
        iteration = iteration_of(project, iteration_id)
        tag = iteration.tags.get(tag_id.lower())
        if tag is None:
            raise not_found("NotFoundTag", f"Tag not found: {tag_id}")
        return 200, tag.to_json(sum(1 for _, tids in iteration.examples if tag.id in tids))
    tag = _tag(project, tag_id)
    return 200, tag.to_json(project.tag_image_count(tag.id))


def update_tag(fake, req, project_id, tag_id):
    project = fake.state.project(project_id)
    tag = _tag(project, tag_id)
    body = req.json() or {}
    tag.name = _check_tag_name(project, body.get("name", tag.name), tag.id)
    tag.type = _check_tag_type(project, body.get("type", tag.type), tag.id)
    tag.description = body.get("description", tag.description)
    return 200, tag.to_json(project.tag_image_count(tag.id))


def delete_tag(fake, req, project_id, tag_id):
    project = fake.state.project(project_id)
    tag = _tag(project, tag_id)
    del project.tags[tag.id]
    for image in project.images.values():
        image.tag_ids.pop(tag.id, None)
    return 204, None


# --- training ------------------------------------------------------------------------------------

def train_project(fake, req, project_id):
    project = fake.state.project(project_id)
    if any(it.status == "Training" for it in project.iterations.values()):
        raise bad_request("BadRequestTrainingAlreadyInProgress", "Training already in progress.")
    training_type = canonical(req.arg("trainingType", "Regular"), ("Regular", "Advanced"),
                               "BadRequestInvalid", "training type")
    budget = int(req.number("reservedBudgetInHours", 0))
    if training_type == "Advanced" and budget < 1:
        raise bad_request("BadRequestReservedBudgetInHoursNotEnoughForAdvancedTraining",
                          "Advanced training needs a reserved budget of at least 1 hour.")
    email = req.arg("notificationEmailAddress")
    if email and "@" not in email:
        raise bad_request("BadRequestInvalidEmailAddress", f"Invalid email address '{email}'.")
    if project.domain.type != "Classification":
        raise bad_request("BadRequestNotSupported", "This fake trains classification projects only.")
    if len(project.iterations) >= MAX_ITERATIONS_PER_PROJECT:
        raise bad_request("BadRequestExceedIterationPerProjectLimit",
                          f"The project already has {MAX_ITERATIONS_PER_PROJECT} iterations; delete one.")

    selected = [t.lower() for t in ((req.json() or {}).get("selectedTags") or [])]
    tags = {t: _tag(project, t) for t in selected} if selected else dict(project.tags)
    regular = [t for t in tags.values() if t.type != "Negative"]
    if len(regular) < (2 if project.classification_type == "Multiclass" else 1):
        raise bad_request("BadRequestTrainingValidationFailed", "Not enough tags for training")
    short = [t.name for t in tags.values() if project.tag_image_count(t.id) < MIN_IMAGES_PER_TAG]
    if short:
        raise bad_request("BadRequestTrainingValidationFailed",
                          f"Not enough images for training: tags {short} have fewer than "
                          f"{MIN_IMAGES_PER_TAG} images.")

    examples = [(im.id, [t for t in im.tag_ids if t in tags]) for im in project.images.values()]
    examples = [(image_id, tids) for image_id, tids in examples if tids]
    signature = frozenset([(project.images[i].sha256, tuple(sorted(t))) for i, t in examples]
                          + [("domain", project.domain_id), ("type", project.classification_type)])
    trained = [it for it in project.iterations.values() if it.status == "Completed"]
    if trained and trained[-1].signature == signature and not req.flag("forceTrain"):
        raise bad_request("BadRequestTrainingNotNeeded", "Nothing changed since last training")

    now = time.time()
    failure = fake.training_failures.pop(0) if fake.training_failures else None
    project.iterations_created += 1
    iteration = Iteration(
        id=new_id(), name=f"Iteration {project.iterations_created}", project_id=project.id,
        domain_id=project.domain_id, classification_type=project.classification_type,
        training_type=training_type, reserved_budget_in_hours=budget, created=now,
        ready_at=now + fake.train_seconds, fail_details=failure,
        tags={t.id: Tag(t.id, t.name, t.description, t.type) for t in tags.values()},
        examples=examples, signature=signature, last_modified=now)
    if failure is None:
        # Fit now on the snapshot the iteration was asked for; it is served once Completed.
        model = ToyModel(multilabel=project.classification_type == "Multilabel")
        iteration.model = model.fit([(project.images[i].data, t) for i, t in examples])
        iteration.scores = {i: iteration.model.predict(project.images[i].data) for i, _ in examples}
    project.iterations[iteration.id] = iteration
    return 200, iteration.to_json()


# --- iterations ----------------------------------------------------------------------------------

def get_iterations(fake, req, project_id):
    return 200, [it.to_json() for it in fake.state.project(project_id).iterations.values()]


def get_iteration(fake, req, project_id, iteration_id):
    return 200, iteration_of(fake.state.project(project_id), iteration_id).to_json()


def update_iteration(fake, req, project_id, iteration_id):
    project = fake.state.project(project_id)
    iteration = iteration_of(project, iteration_id)
    name = ((req.json() or {}).get("name") or "").strip()
    if not name:
        raise bad_request("BadRequestIterationName", "Iteration name cannot be empty.")
    if any(it.name == name and it is not iteration for it in project.iterations.values()):
        raise bad_request("BadRequestIterationNameNotUnique", "Iteration name not unique")
    iteration.name, iteration.last_modified = name, time.time()
    return 200, iteration.to_json()


def delete_iteration(fake, req, project_id, iteration_id):
    project = fake.state.project(project_id)
    iteration = iteration_of(project, iteration_id)
    if iteration.publish_name:
        raise bad_request("BadRequestIterationIsPublished",
                          f"Cannot delete iteration '{iteration.name}': it is published as "
                          f"'{iteration.publish_name}'; unpublish it first.")
    del project.iterations[iteration.id]
    return 204, None


def _average_precision(pairs: list[tuple[float, bool]]) -> float:
    """Mean of the precision at each relevant item, ranking by score (scikit-learn's definition)."""
    relevant = sum(1 for _, positive in pairs if positive)
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(sorted(pairs, key=lambda p: -p[0]), start=1):
        if positive:
            hits += 1
            total += hits / rank
    return total / relevant


def get_iteration_performance(fake, req, project_id, iteration_id):
    iteration = iteration_of(fake.state.project(project_id), iteration_id)
    if iteration.status != "Completed":
        raise bad_request("BadRequestIterationIsNotTrained", f"Iteration '{iteration.name}' is not trained.")
    threshold = req.number("threshold", 0.5)
    # Measured on the training images themselves: the toy model has no hold-out split.
    per_tag, sums = [], [0, 0, 0]
    for tag in iteration.tags.values():
        pairs = [(iteration.scores[i].get(tag.id, 0.0), tag.id in tids) for i, tids in iteration.examples]
        tp = sum(1 for s, pos in pairs if pos and s >= threshold)
        fp = sum(1 for s, pos in pairs if not pos and s >= threshold)
        fn = sum(1 for s, pos in pairs if pos and s < threshold)
        sums = [sums[0] + tp, sums[1] + fp, sums[2] + fn]
        per_tag.append({"id": tag.id, "name": tag.name,
                        "precision": tp / (tp + fp) if tp + fp else 0.0, "precisionStdDeviation": 0.0,
                        "recall": tp / (tp + fn) if tp + fn else 0.0, "recallStdDeviation": 0.0,
                        "averagePrecision": _average_precision(pairs)})
    tp, fp, fn = sums
    return 200, {
        "perTagPerformance": per_tag,
        "precision": tp / (tp + fp) if tp + fp else 0.0, "precisionStdDeviation": 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0, "recallStdDeviation": 0.0,
        "averagePrecision": (sum(t["averagePrecision"] for t in per_tag) / len(per_tag)) if per_tag else 0.0,
    }


# --- publishing ----------------------------------------------------------------------------------

def publish_iteration(fake, req, project_id, iteration_id):
    project = fake.state.project(project_id)
    iteration = iteration_of(project, iteration_id)
    name, resource_id = req.arg("publishName"), req.arg("predictionId")
    if not name:
        raise bad_request("BadRequestInvalidPublishName", "Publish name cannot be empty.")
    if not resource_id or resource_id.lower() != fake.prediction_resource_id.lower():
        raise bad_request("BadRequestInvalidPublishTarget",
                          f"Invalid prediction resource id '{resource_id}'.")
    if iteration.status != "Completed":
        raise bad_request("BadRequestIterationIsNotTrained", f"Iteration '{iteration.name}' is not trained.")
    holder = next((it for it in project.iterations.values()
                   if it is not iteration and (it.publish_name or "").lower() == name.lower()), None)
    if holder is not None:
        if not req.flag("overwrite"):
            raise bad_request("BadRequestInvalidPublishName",
                              f"Publish name '{name}' is already used by iteration '{holder.name}'.")
        holder.publish_name = holder.publish_resource_id = None
    # Publishing the same iteration again is allowed (the vendor quickstart does it twice).
    iteration.publish_name, iteration.publish_resource_id = name, resource_id
    iteration.last_modified = time.time()
    return 200, True


def unpublish_iteration(fake, req, project_id, iteration_id):
    iteration = iteration_of(fake.state.project(project_id), iteration_id)
    if not iteration.publish_name:
        raise bad_request("BadRequestIterationNotPublished", f"Iteration '{iteration.name}' is not published.")
    iteration.publish_name = iteration.publish_resource_id = None
    iteration.last_modified = time.time()
    return 204, None


ROUTES = routes("training", [
    ("GET", "/domains", get_domains),
    ("GET", "/domains/{domain_id}", get_domain),
    ("GET", "/projects", get_projects),
    ("POST", "/projects", create_project),
    ("GET", "/projects/{project_id}", get_project),
    ("PATCH", "/projects/{project_id}", update_project),
    ("DELETE", "/projects/{project_id}", delete_project),
    ("GET", "/projects/{project_id}/tags", get_tags),
    ("POST", "/projects/{project_id}/tags", create_tag),
    ("GET", "/projects/{project_id}/tags/{tag_id}", get_tag),
    ("PATCH", "/projects/{project_id}/tags/{tag_id}", update_tag),
    ("DELETE", "/projects/{project_id}/tags/{tag_id}", delete_tag),
    ("POST", "/projects/{project_id}/train", train_project),
    ("GET", "/projects/{project_id}/iterations", get_iterations),
    ("GET", "/projects/{project_id}/iterations/{iteration_id}", get_iteration),
    ("PATCH", "/projects/{project_id}/iterations/{iteration_id}", update_iteration),
    ("DELETE", "/projects/{project_id}/iterations/{iteration_id}", delete_iteration),
    ("GET", "/projects/{project_id}/iterations/{iteration_id}/performance", get_iteration_performance),
    ("POST", "/projects/{project_id}/iterations/{iteration_id}/publish", publish_iteration),
    ("DELETE", "/projects/{project_id}/iterations/{iteration_id}/publish", unpublish_iteration),
])
