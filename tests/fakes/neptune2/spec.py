"""Minimal Swagger 2.0 specs served by the fake Neptune 2.x backend.

The neptune 1.x client builds its bravado clients from specs downloaded from the server, so these specs decide the
URL paths.  Every parameter the client passes must be declared (bravado refuses unknown ones), and every nested
object the client reads as an attribute must be a ``$ref`` to a named definition (only those become models).
All operations carry the tag ``api`` because the client calls ``swagger_client.api.<operationId>``.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

# Paths served outside the Swagger specs (not bravado operations).
FILE_SET_ZIP_PATH = "/api/leaderboard/v1/storage/zip"
OAUTH_REALM_PATH = "/auth/realms/neptune"
OAUTH_TOKEN_PATH = OAUTH_REALM_PATH + "/protocol/openid-connect/token"


def _ref(name: str) -> JSON:
    return {"$ref": f"#/definitions/{name}"}


def _arr(item: JSON) -> JSON:
    return {"type": "array", "items": item}


S = {"type": "string"}
I32 = {"type": "integer", "format": "int32"}
I64 = {"type": "integer", "format": "int64"}
F64 = {"type": "number", "format": "double"}
B = {"type": "boolean"}
DT = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
OBJ = {"type": "object"}


def _q(name: str, schema: JSON | None = None, required: bool = False) -> JSON:
    """Query parameter; arrays use the ``multi`` format (the fake also accepts comma-separated values)."""
    param: JSON = {"name": name, "in": "query", "required": required}
    param.update(schema or S)
    if param.get("type") == "array":
        param["collectionFormat"] = "multi"
    return param


def _h(name: str, required: bool = True) -> JSON:
    return {"name": name, "in": "header", "required": required, "type": "string"}


def _body(name: str = "params") -> JSON:
    return {"name": name, "in": "body", "required": True, "schema": OBJ}


def _path(name: str) -> JSON:
    return {"name": name, "in": "path", "required": True, "type": "string"}


def _op(
    op_id: str,
    params: list[JSON],
    response: JSON | None,
    produces: list[str] | None = None,
) -> JSON:
    op: JSON = {
        "tags": ["api"],
        "operationId": op_id,
        "parameters": params,
        "produces": produces or ["application/json"],
        "consumes": ["application/json"],
        "responses": {
            "200": {"description": "OK", **({"schema": response} if response else {})},
            "default": {"description": "Error", "schema": _ref("Error")},
        },
    }
    return op


def _spec(title: str, paths: dict[str, dict[str, JSON]], definitions: dict[str, JSON]) -> JSON:
    return {
        "swagger": "2.0",
        "info": {"title": title, "version": "2.0-fake"},
        "basePath": "/",
        "paths": paths,
        "definitions": {**definitions, "Error": _ERROR},
    }


def _obj(props: dict[str, JSON]) -> JSON:
    return {"type": "object", "properties": props}


# Error body of every non-2xx answer (declared as the ``default`` response, so bravado parses it).
_ERROR = _obj({"code": I32, "message": S, "errorType": S, "title": S})


# ----------------------------------------------------------------------------------------------- backend spec

_BACKEND_DEFS: dict[str, JSON] = {
    "ClientConfig": _obj(
        {
            "apiUrl": S,
            "applicationUrl": S,
            "pyLibVersions": _ref("ClientVersionsConfigDTO"),
            "multiPartUpload": _ref("MultipartUploadConfigDTO"),
            "artifacts": _ref("ArtifactsConfigDTO"),
            "sysNameSetByBackend": B,
            "security": _ref("SecurityDTO"),
        }
    ),
    "ClientVersionsConfigDTO": _obj(
        {"minRecommendedVersion": S, "minCompatibleVersion": S, "maxCompatibleVersion": S}
    ),
    "MultipartUploadConfigDTO": _obj(
        {
            "enabled": B,
            "minChunkSize": I64,
            "maxChunkSize": I64,
            "maxChunkCount": I64,
            "maxSinglePartSize": I64,
        }
    ),
    "ArtifactsConfigDTO": _obj({"enabled": B, "apiVersion": I32}),
    "SecurityDTO": _obj({"clientId": S, "openIdDiscovery": S}),
    "NeptuneOauthToken": _obj({"accessToken": S, "refreshToken": S, "username": S}),
    "ProjectDTO": _obj(
        {
            "id": UUID,
            "name": S,
            "organizationName": S,
            "organizationId": UUID,
            "projectKey": S,
            "version": I32,
            "visibility": S,
            "description": S,
            "archived": B,
            "timeOfCreation": DT,
        }
    ),
    "ProjectListDTO": _obj(
        {"entries": _arr(_ref("ProjectDTO")), "matchingItemCount": I32, "totalItemCount": I32}
    ),
    "OrganizationDTO": _obj({"id": UUID, "name": S, "organizationType": S}),
}

_BACKEND_PATHS: dict[str, dict[str, JSON]] = {
    "/api/backend/v1/clients/config": {
        "get": _op("getClientConfig", [_h("X-Neptune-Api-Token"), _q("alpha")], _ref("ClientConfig"))
    },
    "/api/backend/v1/authorization/oauth-token": {
        "get": _op("exchangeApiToken", [_h("X-Neptune-Api-Token")], _ref("NeptuneOauthToken"))
    },
    "/api/backend/v1/projects/get": {
        "get": _op("getProject", [_q("projectIdentifier", required=True)], _ref("ProjectDTO"))
    },
    "/api/backend/v1/projects": {
        "get": _op(
            "listProjects",
            [
                _q("organizationIdentifier"),
                _q("organizationId"),
                _q("userRelation"),
                _q("searchTerm"),
                _q("viewedUsername"),
                _q("archived", B),
                _q("sortBy", _arr(S)),
                _q("sortDirection", _arr(S)),
                _q("offset", I32),
                _q("limit", I32),
            ],
            _ref("ProjectListDTO"),
        )
    },
    "/api/backend/v1/myOrganizations": {"get": _op("listOrganizations", [], _arr(_ref("OrganizationDTO")))},
}

# ------------------------------------------------------------------------------------------- leaderboard spec


def _props(extra: dict[str, JSON]) -> JSON:
    return _obj({"attributeName": S, "attributeType": S, **extra})


_PROPERTY_DEFS: dict[str, JSON] = {
    "FloatAttributeDTO": _props({"value": F64}),
    "IntAttributeDTO": _props({"value": I64}),
    "BoolAttributeDTO": _props({"value": B}),
    "StringAttributeDTO": _props({"value": S}),
    "DatetimeAttributeDTO": _props({"value": DT}),
    "ExperimentStateAttributeDTO": _props({"value": S}),
    "NotebookRefAttributeDTO": _props(
        {
            "notebookId": S,
            "notebookName": S,
            "notebookDeleted": B,
            "checkpointId": S,
            "checkpointName": S,
            "checkpointDeleted": B,
        }
    ),
    "GitCommitDTO": _obj({"commitId": S, "message": S, "authorName": S, "authorEmail": S, "commitDate": DT}),
    "GitRefAttributeDTO": _props(
        {
            "commit": _ref("GitCommitDTO"),
            "repositoryDirty": B,
            "currentBranch": S,
            "remotes": _arr(S),
        }
    ),
    "FloatSeriesAttributeDTO": _props(
        {"last": F64, "lastStep": F64, "min": F64, "max": F64, "average": F64, "variance": F64}
    ),
    "StringSeriesAttributeDTO": _props({"last": S, "lastStep": F64}),
    "ImageSeriesAttributeDTO": _props({"channelId": S, "lastStep": F64}),
    "StringSetAttributeDTO": _props({"values": _arr(S)}),
    "FileAttributeDTO": _props({"name": S, "ext": S, "size": I64}),
    "FileSetAttributeDTO": _props({"size": I64}),
    "ArtifactAttributeDTO": _props({"hash": S}),
}

# AttributeDTO field name -> property definition; the client reads ``attr.<type>Properties``.
ATTRIBUTE_PROPERTY_FIELDS: dict[str, str] = {
    "float": "FloatAttributeDTO",
    "int": "IntAttributeDTO",
    "bool": "BoolAttributeDTO",
    "string": "StringAttributeDTO",
    "datetime": "DatetimeAttributeDTO",
    "experimentState": "ExperimentStateAttributeDTO",
    "notebookRef": "NotebookRefAttributeDTO",
    "gitRef": "GitRefAttributeDTO",
    "floatSeries": "FloatSeriesAttributeDTO",
    "stringSeries": "StringSeriesAttributeDTO",
    "imageSeries": "ImageSeriesAttributeDTO",
    "stringSet": "StringSetAttributeDTO",
    "file": "FileAttributeDTO",
    "fileSet": "FileSetAttributeDTO",
    "artifact": "ArtifactAttributeDTO",
}

_LEADERBOARD_DEFS: dict[str, JSON] = {
    **_PROPERTY_DEFS,
    "AttributeDTO": _obj(
        {
            "name": S,
            "type": S,
            **{f"{t}Properties": _ref(d) for t, d in ATTRIBUTE_PROPERTY_FIELDS.items()},
        }
    ),
    "Experiment": _obj(
        {
            "id": UUID,
            "shortId": S,
            "type": S,
            "name": S,
            "organizationId": UUID,
            "organizationName": S,
            "projectId": UUID,
            "projectName": S,
            "parentId": UUID,
            "trashed": B,
            "customId": S,
        }
    ),
    "ExperimentAttributesDTO": _obj(
        {
            "id": UUID,
            "organizationId": UUID,
            "organizationName": S,
            "projectId": UUID,
            "projectName": S,
            "type": S,
            "trashed": B,
            "attributes": _arr(_ref("AttributeDTO")),
        }
    ),
    "AttributeDefinitionDTO": _obj({"name": S, "type": S}),
    "LeaderboardAttributesDTO": _obj({"entries": _arr(_ref("AttributeDefinitionDTO"))}),
    "LeaderboardEntryDTO": _obj({"experimentId": UUID, "type": S, "attributes": _arr(_ref("AttributeDTO"))}),
    "LeaderboardEntriesSearchResultDTO": _obj(
        {"matchingItemCount": I64, "totalGroupCount": I64, "entries": _arr(_ref("LeaderboardEntryDTO"))}
    ),
    "FloatPointValueDTO": _obj({"timestampMillis": I64, "step": F64, "value": F64}),
    "FloatSeriesValuesDTO": _obj({"totalItemCount": I32, "values": _arr(_ref("FloatPointValueDTO"))}),
    "StringPointValueDTO": _obj({"timestampMillis": I64, "step": F64, "value": S}),
    "StringSeriesValuesDTO": _obj({"totalItemCount": I32, "values": _arr(_ref("StringPointValueDTO"))}),
    "ImageDTO": _obj({"name": S, "description": S, "imageUrl": S, "thumbnailUrl": S}),
    "ImageSeriesPointDTO": _obj({"timestampMillis": I64, "step": F64, "value": _ref("ImageDTO")}),
    "ImageSeriesValuesDTO": _obj({"totalItemCount": I32, "values": _arr(_ref("ImageSeriesPointDTO"))}),
    "DownloadPrepareRequestDTO": _obj({"id": S, "downloadUrl": S}),
    "FileEntryDTO": _obj({"name": S, "size": I64, "mtime": DT, "fileType": S}),
    "ChannelYDTO": _obj({"imageValue": _ref("ImageDTO"), "numericValue": F64, "textValue": S}),
    "ChannelPointDTO": _obj({"timestampMillis": I64, "x": F64, "y": _ref("ChannelYDTO")}),
    "LimitedChannelValuesDTO": _obj(
        {"channelId": S, "totalItemCount": I32, "values": _arr(_ref("ChannelPointDTO"))}
    ),
}

_EXP_ATTR = [_q("experimentId", required=True), _q("attribute", required=True)]
_PAGED = [_q("limit", I32), _q("offset", I32)]
_LB = "/api/leaderboard/v1"

# getter operationId -> (path suffix, response definition)
_ATOM_GETTERS: dict[str, tuple[str, str]] = {
    "getFloatAttribute": ("float", "FloatAttributeDTO"),
    "getIntAttribute": ("int", "IntAttributeDTO"),
    "getBoolAttribute": ("bool", "BoolAttributeDTO"),
    "getStringAttribute": ("string", "StringAttributeDTO"),
    "getDatetimeAttribute": ("datetime", "DatetimeAttributeDTO"),
    "getFileAttribute": ("file", "FileAttributeDTO"),
    "getFloatSeriesAttribute": ("floatSeries", "FloatSeriesAttributeDTO"),
    "getStringSeriesAttribute": ("stringSeries", "StringSeriesAttributeDTO"),
    "getStringSetAttribute": ("stringSets", "StringSetAttributeDTO"),
    "getArtifactAttribute": ("artifact", "ArtifactAttributeDTO"),
}

# operationId -> attribute type the fake requires for the getter
ATOM_GETTER_TYPES: dict[str, str] = {
    "getFloatAttribute": "float",
    "getIntAttribute": "int",
    "getBoolAttribute": "bool",
    "getStringAttribute": "string",
    "getDatetimeAttribute": "datetime",
    "getFileAttribute": "file",
    "getFloatSeriesAttribute": "floatSeries",
    "getStringSeriesAttribute": "stringSeries",
    "getStringSetAttribute": "stringSet",
    "getArtifactAttribute": "artifact",
}

_LEADERBOARD_PATHS: dict[str, dict[str, JSON]] = {
    f"{_LB}/experiments": {
        "get": _op("getExperiment", [_q("experimentId", required=True)], _ref("Experiment"))
    },
    f"{_LB}/attributes": {
        "get": _op(
            "getExperimentAttributes", [_q("experimentId", required=True)], _ref("ExperimentAttributesDTO")
        )
    },
    f"{_LB}/leaderboard/attributes/search": {
        "post": _op(
            "searchLeaderboardAttributes",
            [_q("projectIdentifier", required=True), _q("search"), _q("type", _arr(S)), _body()],
            _ref("LeaderboardAttributesDTO"),
        )
    },
    f"{_LB}/leaderboard/entries/search": {
        "post": _op(
            "searchLeaderboardEntries",
            [_q("projectIdentifier", required=True), _q("type", _arr(S)), _body()],
            _ref("LeaderboardEntriesSearchResultDTO"),
        )
    },
    f"{_LB}/attributes/series/float": {
        "get": _op("getFloatSeriesValues", _EXP_ATTR + _PAGED, _ref("FloatSeriesValuesDTO"))
    },
    f"{_LB}/attributes/series/string": {
        "get": _op(
            "getStringSeriesValues",
            _EXP_ATTR + _PAGED + [_q("maxSingleValueLength", I32)],
            _ref("StringSeriesValuesDTO"),
        )
    },
    f"{_LB}/attributes/series/image": {
        "get": _op("getImageSeriesValues", _EXP_ATTR + _PAGED, _ref("ImageSeriesValuesDTO"))
    },
    f"{_LB}/attributes/series/image/single": {
        "get": _op(
            "getImageSeriesValue", _EXP_ATTR + [_q("index", I32, required=True)], {"type": "file"}, ["*/*"]
        )
    },
    f"{_LB}/attributes/download": {
        "get": _op("downloadAttribute", _EXP_ATTR, {"type": "file"}, ["application/octet-stream"])
    },
    f"{_LB}/attributes/downloadFileSetZipRequest": {
        "post": _op("prepareForDownloadFileSetAttributeZip", _EXP_ATTR, _ref("DownloadPrepareRequestDTO"))
    },
    f"{_LB}/storage/downloadRequest": {
        "get": _op("getDownloadPrepareRequest", [_q("id", required=True)], _ref("DownloadPrepareRequestDTO"))
    },
    f"{_LB}/attributes/fileset/ls": {
        "get": _op("lsFileSetAttribute", _EXP_ATTR + [_q("path")], _arr(_ref("FileEntryDTO")))
    },
    f"{_LB}/channels/{{channelId}}/values": {
        "get": _op("getChannelValues", [_path("channelId")] + _PAGED, _ref("LimitedChannelValuesDTO"))
    },
    **{
        f"{_LB}/attributes/{suffix}": {"get": _op(op_id, _EXP_ATTR, _ref(defn))}
        for op_id, (suffix, defn) in _ATOM_GETTERS.items()
    },
}

# -------------------------------------------------------------------------------------------- artifacts spec

_ARTIFACT_DEFS: dict[str, JSON] = {
    "ArtifactFileMetadata": _obj({"key": S, "value": S}),
    "ArtifactFileDTO": _obj(
        {"filePath": S, "fileHash": S, "type": S, "size": I64, "metadata": _arr(_ref("ArtifactFileMetadata"))}
    ),
    "ArtifactFilesDTO": _obj({"files": _arr(_ref("ArtifactFileDTO"))}),
}

_ARTIFACT_PATHS: dict[str, dict[str, JSON]] = {
    "/api/artifacts/v1/artifacts/files": {
        "get": _op(
            "listArtifactFiles",
            [_q("projectIdentifier", required=True), _q("hash", required=True)],
            _ref("ArtifactFilesDTO"),
        )
    },
}


def backend_spec() -> JSON:
    return _spec("Neptune backend (fake)", _BACKEND_PATHS, _BACKEND_DEFS)


def leaderboard_spec() -> JSON:
    return _spec("Neptune leaderboard (fake)", _LEADERBOARD_PATHS, _LEADERBOARD_DEFS)


def artifacts_spec() -> JSON:
    return _spec("Neptune artifacts (fake)", _ARTIFACT_PATHS, _ARTIFACT_DEFS)


SPEC_PATHS: dict[str, Any] = {
    "/api/backend/swagger.json": backend_spec,
    "/api/leaderboard/swagger.json": leaderboard_spec,
    "/api/artifacts/swagger.json": artifacts_spec,
}


def operations() -> dict[tuple[str, str], str]:
    """(METHOD, path template) -> operationId for every declared operation, used for routing and counters."""
    table: dict[tuple[str, str], str] = {}
    for paths in (_BACKEND_PATHS, _LEADERBOARD_PATHS, _ARTIFACT_PATHS):
        for path, methods in paths.items():
            for method, op in methods.items():
                table[(method.upper(), path)] = op["operationId"]
    return table
